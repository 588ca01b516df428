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
    modifiers(&BearerAuth, &Webhooks),
)]
struct ApiDoc;

/// The `multipart/form-data` form of an upload body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: the handler streams the part, never builds this
pub struct UploadForm {
    /// The file; its filename is used when the query has none. Other parts are ignored.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

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

/// The status events POSTed to `webhook_url` (OpenAPI 3.1 `webhooks`, which utoipa 5 has no
/// field for: it goes in as a top-level extension under its own name).
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let event = serde_json::json!({"post": {
            "summary": "A media's processing ended: media.ready or media.failed",
            "description": "Sent to `webhook_url` after each status change made by processing; \
                at-least-once (5 attempts, 10 s timeout each, redirects not followed), so \
                deduplicate on `id` + `event`. Check `Satchel-Signature` before trusting the body.",
            "parameters": [{
                "name": "Satchel-Signature",
                "in": "header",
                "required": true,
                "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\", \
                    keyed with webhook_secret>`, one `v1=` per secret during a rotation \
                    (`webhook_secrets`). Refuse a `t` more than 5 minutes from your clock and \
                    compare in constant time; each attempt is signed afresh.",
                "schema": {"type": "string", "pattern": "^t=[0-9]+(,v1=[0-9a-f]{64})+$"},
            }],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "description": "The Media object plus `event`.",
                "allOf": [
                    {"$ref": "#/components/schemas/Media"},
                    {"type": "object", "required": ["event"], "properties": {
                        "event": {"type": "string", "enum": ["media.ready", "media.failed"]},
                    }},
                ],
            }}}},
            "responses": {
                "2XX": {"description": "Received. Any other answer, or none, is retried."},
            },
        }});
        let webhooks = serde_json::json!({ "mediaStatus": event });
        openapi
            .extensions
            .get_or_insert_with(Default::default)
            .insert("webhooks".into(), webhooks);
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
