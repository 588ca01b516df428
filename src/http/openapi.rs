//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "satchel", description = "Media processing for chat backends: uploads, per-chat private storage, processing, signed member-only downloads. Contract: API.md, version 1."),
    paths(
        super::members::add, super::members::remove, super::members::replace,
        super::members::list, super::members::erase_chat,
        super::upload::upload, super::media::get, super::media::delete,
        super::links::issue, super::files::download,
        super::ops::healthz, super::ops::readyz, super::ops::metrics, super::ops::openapi,
    ),
    components(schemas(crate::domain::Media, crate::error::ErrorBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
