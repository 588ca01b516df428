//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "satchel", description = "Media processing for chat backends: uploads, per-chat private storage, processing, signed member-only downloads. Contract: API.md, version 1 with the 1.1 additions."),
    paths(
        super::members::add, super::members::remove, super::members::replace,
        super::members::list, super::members::erase_chat, super::usage::get,
        super::upload::upload, super::media::get, super::media::delete,
        super::links::issue, super::files::download, super::files::preflight,
        super::events::dead, super::events::retry,
        super::tus::issue, super::tus::options, super::tus::create, super::tus::head,
        super::tus::patch, super::tus::terminate,
        super::ops::healthz, super::ops::readyz, super::ops::metrics, super::ops::openapi,
    ),
    components(schemas(crate::domain::Media, crate::error::ErrorBody, crate::catalog::Usage)),
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

/// The events POSTed to `webhook_url` (OpenAPI 3.1 `webhooks`, which utoipa 5 has no
/// field for: it goes in as a top-level extension under its own name).
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let event = serde_json::json!({"post": {
            "summary": "Something changed: media.ready, media.failed, media.erased or chat.erased",
            "description": "Every event is written to the catalog with the change it reports, \
                then POSTed to `webhook_url` from that outbox: at-least-once (also across \
                restarts and crashes), so deduplicate on `event_id`; in order per media. A \
                delivery that fails (no 2xx within 10 s; redirects are not followed) is retried \
                with backoff (1 s doubling, at most 5 min) for `webhook_max_age_seconds`, then \
                marked dead: `GET /v1/events/dead` lists, `POST /v1/events/dead/retry` re-queues. \
                Check `Satchel-Signature` before trusting the body.",
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
                "oneOf": [
                    {
                        "description": "media.ready, media.failed, media.erased: the Media object \
                            (for media.erased as it was, status unchanged) plus `event`, \
                            `event_id` and, for media.erased, `reason`.",
                        "allOf": [
                            {"$ref": "#/components/schemas/Media"},
                            {"type": "object", "required": ["event", "event_id"], "properties": {
                                "event": {"type": "string",
                                    "enum": ["media.ready", "media.failed", "media.erased"]},
                                "event_id": {"type": "string", "description": "A ULID."},
                                "reason": {"type": "string",
                                    "enum": ["unsent", "expired", "chat_erased"]},
                            }},
                        ],
                    },
                    {
                        "description": "chat.erased",
                        "type": "object",
                        "required": ["event", "event_id", "chat_id", "erased_at"],
                        "properties": {
                            "event": {"type": "string", "enum": ["chat.erased"]},
                            "event_id": {"type": "string"},
                            "chat_id": {"type": "string"},
                            "erased_at": {"type": "string", "format": "date-time"},
                        },
                    },
                ],
            }}}},
            "responses": {
                "2XX": {"description": "Received. Any other answer, or none, is retried."},
            },
        }});
        let webhooks = serde_json::json!({ "events": event });
        openapi
            .extensions
            .get_or_insert_with(Default::default)
            .insert("webhooks".into(), webhooks);
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
