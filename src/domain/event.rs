//! The events of API.md v1.1 "Events": what changed, as the JSON a consumer receives. The
//! catalog writes them in the transaction of the change; `crate::events` delivers them.

use super::{ChatId, Media, MediaId, Status};
use serde::Serialize;
use time::OffsetDateTime;

/// Where an event goes. Every event gets one outbox row per sink the deployment has, each
/// delivered (and retried, and marked dead) on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sink {
    /// The broker's `<prefix>.events` topic exchange (only with `amqp_url`).
    Amqp,
    /// `webhook_url` (only when it is set).
    Webhook,
}

impl Sink {
    pub const ALL: [Sink; 2] = [Sink::Amqp, Sink::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Amqp => "amqp",
            Sink::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|sink| sink.as_str() == s)
    }
}

/// Why a media was erased: its `media.erased` event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EraseReason {
    /// `DELETE /v1/media/{id}`.
    Unsent,
    /// Its `ttl_seconds` ran out.
    Expired,
    /// Its chat was erased (`DELETE /v1/chats/{chat}`).
    ChatErased,
}

/// An event ready for the outbox: its id, name, what it orders by, and its JSON body.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// A ULID, also in the body: consumers dedupe on it (delivery is at-least-once).
    pub event_id: String,
    /// `media.ready`, `media.failed`, `media.erased` or `chat.erased`.
    pub name: &'static str,
    pub chat_id: ChatId,
    pub media_id: Option<MediaId>,
    pub body: String,
}

#[derive(Serialize)]
struct MediaEvent<'a> {
    event: &'static str,
    event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<EraseReason>,
    #[serde(flatten)]
    media: &'a Media,
}

#[derive(Serialize)]
struct ChatEvent<'a> {
    event: &'static str,
    event_id: &'a str,
    chat_id: &'a ChatId,
    #[serde(with = "time::serde::rfc3339")]
    erased_at: OffsetDateTime,
}

fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

impl NewEvent {
    fn of_media(name: &'static str, media: &Media, reason: Option<EraseReason>) -> Self {
        let event_id = new_id();
        let body = serde_json::to_string(&MediaEvent {
            event: name,
            event_id: &event_id,
            reason,
            media,
        })
        .expect("a Media object serialises");
        Self {
            event_id,
            name,
            chat_id: media.chat_id.clone(),
            media_id: Some(media.id),
            body,
        }
    }

    /// `media.ready` or `media.failed` for a media that reached that status; `None` while it
    /// is processing.
    pub fn status(media: &Media) -> Option<Self> {
        let name = match media.status {
            Status::Processing => return None,
            Status::Ready => "media.ready",
            Status::Failed => "media.failed",
        };
        Some(Self::of_media(name, media, None))
    }

    /// `media.erased`: the Media object as it was (its status unchanged) and why.
    pub fn erased(media: &Media, reason: EraseReason) -> Self {
        Self::of_media("media.erased", media, Some(reason))
    }

    /// `chat.erased`: `{"event", "event_id", "chat_id", "erased_at"}`.
    pub fn chat_erased(chat: &ChatId, at: OffsetDateTime) -> Self {
        let event_id = new_id();
        let name = "chat.erased";
        let body = serde_json::to_string(&ChatEvent {
            event: name,
            event_id: &event_id,
            chat_id: chat,
            erased_at: at,
        })
        .expect("a chat event serialises");
        Self {
            event_id,
            name,
            chat_id: chat.clone(),
            media_id: None,
            body,
        }
    }

    /// The events of one media go out in order; a chat's own events order by the chat.
    pub fn order_key(&self) -> String {
        match &self.media_id {
            Some(id) => id.to_string(),
            None => format!("chat:{}", self.chat_id.as_str()),
        }
    }
}

/// The AMQP routing key of an event: `<event>.<chat_id>`, e.g. `media.ready.c1`.
pub fn routing_key(event: &str, chat: &str) -> String {
    format!("{event}.{chat}")
}
