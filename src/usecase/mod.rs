//! What the service does, apart from how a request arrived: uploads, unsend and chat erase,
//! link issuance. Nothing here knows HTTP framing: the handlers in [`crate::http`] parse a
//! request, call one of these, and turn the answer (or its [`ApiError`](crate::error::ApiError),
//! whose codes are the registry clients match on) into a response. The resumable-upload
//! endpoints reuse the same upload use case.

pub mod erase;
pub mod ingest;
pub mod links;
pub mod tus;
pub mod upload;
