//! Resumable uploads (tus 1.0.0) through upload tickets: a chat backend asks for a ticket for
//! one user's upload, and the client sends the bytes itself, in as many requests as its link
//! needs, to any API node.
//!
//! Nothing is kept on a node between requests: the upload's row in the catalog (offset, the
//! store's stage, lifetimes, state) and its bytes staged in the chat's bucket are its whole
//! truth. A request that appends takes the upload with a lease (a conditional `UPDATE`,
//! renewed while it runs, never a lock held over a body); a second one meanwhile is
//! `409 upload_busy`. Bytes count only once the catalog has their offset and stage, so a
//! request cut short, a failed checksum or a crash leaves the upload as it was (or, without a
//! checksum, with what arrived). When the last byte is in, the staged bytes go through the
//! same upload use case as `POST /media` ([`Upload::resume`]): sniffed, metadata stripped,
//! hashed, membership and quota checked again, media and job recorded. The idempotency key
//! `tus:<upload>` makes a completion that is tried again (after a crash) find its media.

mod checksum;
mod lease;

pub use checksum::Checksum;
use lease::Lease;

use super::ingest::IngestError;
use super::ingest::Room;
use super::upload::{check_media_ttl, clean_filename, room, Begun, Stored, Upload};
use crate::catalog::{TusState, TusUpload};
use crate::domain::{ChatId, Media, UserId};
use crate::error::ApiError;
use crate::limits::Name;
use crate::links::Ticket;
use crate::state::AppState;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::time::Duration;
use time::OffsetDateTime;

pub const TUS_VERSION: &str = "1.0.0";
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,expiration,checksum,termination";
pub const TUS_CHECKSUMS: &str = "sha1,sha256";

/// The longest filename a ticket or `Upload-Metadata` may name (the media keeps 255 bytes of
/// it).
pub const MAX_FILENAME_BYTES: usize = 1024;
/// A ticket's lifetime when the request names none, and the longest it may ask for.
const DEFAULT_TICKET_TTL: u64 = 3600;
const MAX_TICKET_TTL: u64 = 7 * 24 * 3600;
/// Staged bytes are read back in pieces this large when the upload completes.
const READ_CHUNK: usize = 256 * 1024;

pub struct TicketRequest {
    pub chat: ChatId,
    pub user: UserId,
    pub max_bytes: Option<u64>,
    pub ttl_seconds: Option<u64>,
    pub media_ttl_seconds: Option<u64>,
    pub filename: Option<String>,
}

pub struct Issued {
    pub upload_url: String,
    pub expires_at: OffsetDateTime,
}

/// `POST /v1/chats/{chat}/upload-tickets`: a signed capability for one upload by a current
/// member.
pub async fn issue_ticket(state: &AppState, request: TicketRequest) -> Result<Issued, ApiError> {
    let ttl = match request.ttl_seconds.unwrap_or(DEFAULT_TICKET_TTL) {
        0 => {
            return Err(ApiError::BadRequest(
                "ttl_seconds must be at least 1".into(),
            ))
        }
        t if t > MAX_TICKET_TTL => {
            return Err(ApiError::BadRequest(format!(
                "ttl_seconds must be at most {MAX_TICKET_TTL}"
            )))
        }
        t => t,
    };
    let max_bytes = match request.max_bytes {
        Some(0) => return Err(ApiError::BadRequest("max_bytes must be at least 1".into())),
        Some(n) => n.min(state.config.max_upload_bytes),
        None => state.config.max_upload_bytes,
    };
    let media_ttl_seconds = check_media_ttl(request.media_ttl_seconds)?;
    let filename = match request.filename {
        Some(f) if f.len() > MAX_FILENAME_BYTES => {
            return Err(ApiError::BadRequest(format!(
                "filename is longer than {MAX_FILENAME_BYTES} bytes"
            )))
        }
        // As the media will be named: no directories, control or format characters.
        f => f.map(|f| clean_filename(Some(&f))),
    };
    let Some(membership) = state
        .catalog
        .membership(&request.chat, &request.user)
        .await?
    else {
        return Err(ApiError::NotAMember);
    };
    state
        .limits
        .check(Name::UploadTicketsPerUser, request.user.as_str(), 1)
        .await?;
    let expires_at = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid")
        + Duration::from_secs(ttl);
    let ticket = Ticket {
        id: ulid::Ulid::new().to_string().to_lowercase(),
        chat: request.chat.to_string(),
        user: request.user.to_string(),
        membership,
        max_bytes,
        media_ttl_seconds,
        filename,
        expires: expires_at.unix_timestamp(),
    };
    let signed = state.signer.ticket(&ticket);
    // Cannot happen with ids of 128 characters and names of 255 bytes; checked all the same,
    // since a ticket longer than this would never open.
    if signed.len() > crate::links::MAX_TICKET_LEN {
        return Err(ApiError::BadRequest("the ticket would be too long".into()));
    }
    Ok(Issued {
        upload_url: format!("{}/v1/tus/{signed}", state.public_url),
        expires_at,
    })
}

/// A request's ticket, if this service signed it (whether it expired is for each request to
/// decide: a created upload outlives its ticket).
pub fn open_ticket(state: &AppState, raw: &str) -> Result<Ticket, ApiError> {
    state.signer.open_ticket(raw).ok_or(ApiError::InvalidTicket)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Unix ms, as the catalog's lease columns count.
pub(super) fn now_ms() -> i64 {
    (now().unix_timestamp_nanos() / 1_000_000) as i64
}

fn ticket_expired(ticket: &Ticket) -> bool {
    ticket.expires <= now().unix_timestamp()
}

/// `POST` (creation): records the upload of `length` bytes, checked as an upload is before a
/// byte is stored (membership, size, quota room, the upload rates).
pub async fn create(
    state: &AppState,
    ticket: &Ticket,
    length: u64,
    client_filename: Option<String>,
) -> Result<TusUpload, ApiError> {
    if ticket_expired(ticket) {
        return Err(ApiError::InvalidTicket);
    }
    state
        .limits
        .check(Name::TusRequestsPerUpload, &ticket.id, 1)
        .await?;
    let limit = ticket.max_bytes.min(state.config.max_upload_bytes);
    if length > limit {
        return Err(ApiError::TooLarge(limit));
    }
    if length == 0 {
        return Err(ApiError::EmptyFile);
    }
    match state.catalog.tus_upload(&ticket.id).await? {
        None => {}
        // A ticket is spent by its upload's end as much as by its use.
        Some(u) if u.state == TusState::Terminated => return Err(ApiError::InvalidTicket),
        Some(_) => return Err(ApiError::UploadExists),
    }
    let (chat, user) = ticket_ids(ticket)?;
    if !same_membership(state, &chat, &user, &ticket.membership).await? {
        return Err(ApiError::NotAMember);
    }
    let filename = ticket
        .filename
        .clone()
        .or(client_filename.map(|f| clean_filename(Some(&f))));
    let upload = Upload {
        chat: chat.clone(),
        user: user.clone(),
        filename: filename.clone(),
        ttl_seconds: ticket.media_ttl_seconds,
        idempotency_key: None,
        digest: None,
        declared_size: Some(length),
        framing: 0,
        // What other resumable uploads hold staged counts against the quotas too: a member
        // cannot park more than the quota's room in unfinished uploads.
        staged: staged(state, &chat, &user, &ticket.id).await?,
    };
    let chat_record = match upload.begin(state).await? {
        Begun::Receiving(receiving) => receiving.chat().clone(),
        Begun::Existing(_) => unreachable!("no idempotency key"),
    };
    let created_at = now().unix_timestamp();
    let row = TusUpload {
        id: ticket.id.clone(),
        chat,
        user,
        membership: ticket.membership.clone(),
        chat_record,
        length,
        offset: 0,
        filename,
        media_ttl_seconds: ticket.media_ttl_seconds,
        stage: String::new(),
        state: TusState::Open,
        media_id: None,
        lease_until: 0,
        created_at,
        expires_at: created_at + state.config.tus_expiry.as_secs() as i64,
        ticket_expires_at: ticket.expires,
    };
    if !state.catalog.create_tus_upload(&row).await? {
        return Err(ApiError::UploadExists);
    }
    state.metrics.tus("created");
    Ok(row)
}

/// Whether `user` is still a member of `chat` under the membership a ticket was issued in:
/// one who left (and perhaps came back, or the chat was erased and made again) is not.
async fn same_membership(
    state: &AppState,
    chat: &ChatId,
    user: &UserId,
    membership: &str,
) -> Result<bool, ApiError> {
    Ok(state.catalog.membership(chat, user).await?.as_deref() == Some(membership))
}

/// The bytes the chat's and the user's open resumable uploads other than `id` hold staged
/// (not asked for without a quota).
async fn staged(
    state: &AppState,
    chat: &ChatId,
    user: &UserId,
    id: &str,
) -> Result<(u64, u64), ApiError> {
    let quota = state.config.quota;
    if quota.chat_bytes.is_none() && quota.user_bytes.is_none() {
        return Ok((0, 0));
    }
    Ok(state.catalog.tus_staged(chat, user, id).await?)
}

/// What is left of the tightest storage quota for upload `id`: the usage and what the chat's
/// and the user's other resumable uploads hold staged both count.
async fn staged_room(
    state: &AppState,
    chat: &ChatId,
    user: &UserId,
    id: &str,
) -> Result<Option<Room>, ApiError> {
    let staged = staged(state, chat, user, id).await?;
    room(state, chat, user, staged).await
}

fn ticket_ids(ticket: &Ticket) -> Result<(ChatId, UserId), ApiError> {
    // Signed by us from parsed ids: failing here means a bug or a changed id rule.
    let chat = ChatId::parse(&ticket.chat).map_err(|_| ApiError::InvalidTicket)?;
    let user = UserId::parse(&ticket.user).map_err(|_| ApiError::InvalidTicket)?;
    Ok((chat, user))
}

/// The upload of `ticket`, as it may be answered about: an ended one is an error (spent
/// ticket, expired, erased), a finished one only until its ticket expires.
async fn live(state: &AppState, ticket: &Ticket) -> Result<TusUpload, ApiError> {
    state
        .limits
        .check(Name::TusRequestsPerUpload, &ticket.id, 1)
        .await?;
    let Some(upload) = state.catalog.tus_upload(&ticket.id).await? else {
        return Err(ApiError::InvalidTicket);
    };
    match upload.state {
        TusState::Open if upload.expires_at <= now().unix_timestamp() => {
            Err(ApiError::UploadExpired)
        }
        TusState::Open => Ok(upload),
        TusState::Done if ticket_expired(ticket) => Err(ApiError::InvalidTicket),
        TusState::Done => Ok(upload),
        TusState::Terminated => Err(ApiError::InvalidTicket),
        TusState::Expired => Err(ApiError::UploadExpired),
        TusState::Erased => Err(ApiError::Gone),
    }
}

/// `HEAD`: where the upload is (its offset, length, expiry and, once it is one, its media).
/// One whose bytes are all in but which did not become a media (the node finishing it died)
/// is finished here.
pub async fn status(state: &AppState, ticket: &Ticket) -> Result<TusUpload, ApiError> {
    let upload = live(state, ticket).await?;
    let finishable = upload.state == TusState::Open
        && upload.offset == upload.length
        && upload.lease_until <= now_ms();
    if !finishable {
        return Ok(upload);
    }
    let lease = match Lease::take(state, &upload.id).await {
        Ok(lease) => lease,
        // Another request is finishing it this moment: it is where it is.
        Err(ApiError::UploadBusy) => return Ok(upload),
        Err(e) => return Err(e),
    };
    let finished = finish(state, &upload, &lease).await;
    lease.release().await;
    let media = finished?;
    Ok(TusUpload {
        state: TusState::Done,
        media_id: Some(media.id),
        ..upload
    })
}

/// A `PATCH` (or the body of a creation `POST`) as asked for, before its body.
pub struct Chunk {
    pub offset: u64,
    /// `Content-Length`, when announced: refused at once if it goes past `Upload-Length`.
    pub declared: Option<u64>,
    pub checksum: Option<Checksum>,
}

/// `PATCH`: appends the body at `chunk.offset`, which must be the upload's. The bytes count
/// only when they are all in (and match the checksum, if one was given); a body cut short
/// without a checksum keeps what arrived. The last byte makes the media: the upload as it is
/// then, with its new offset and, after the last byte, its media.
pub async fn append<S>(
    state: &AppState,
    ticket: &Ticket,
    chunk: Chunk,
    body: S,
) -> Result<TusUpload, ApiError>
where
    S: Stream<Item = Result<Bytes, IngestError>>,
{
    let upload = live(state, ticket).await?;
    if upload.state == TusState::Done {
        return Err(ApiError::OffsetMismatch(upload.offset));
    }
    if chunk.offset != upload.offset {
        return Err(ApiError::OffsetMismatch(upload.offset));
    }
    let left = upload.length - upload.offset;
    if chunk.declared.is_some_and(|n| n > left) {
        return Err(past_length(upload.length));
    }
    if !same_membership(state, &upload.chat, &upload.user, &upload.membership).await? {
        // Left the chat: the upload ends here, and its bytes go.
        state
            .catalog
            .end_tus_upload(&upload.id, None, TusState::Terminated, None)
            .await?;
        state.metrics.tus("not_a_member");
        return Err(ApiError::NotAMember);
    }
    let _slot = state.in_flight.enter(upload.user.as_str())?;
    let lease = Lease::take(state, &upload.id).await?;
    // What was read before the lease may be stale: another request may have appended in
    // between. Only the upload as it is now, held, is appended to.
    let appended = match state.catalog.tus_upload(&upload.id).await? {
        Some(now) if now.state == TusState::Open && now.offset == chunk.offset => {
            match staged_room(state, &now.chat, &now.user, &now.id).await {
                Ok(Some(room)) if chunk.declared.is_some_and(|n| now.offset + n > room.left) => {
                    Err(ApiError::QuotaExceeded(room.scope))
                }
                Ok(room) => {
                    append_held(state, &now, &lease, (chunk.checksum, room), left, body).await
                }
                Err(e) => Err(e),
            }
        }
        Some(now) => Err(ApiError::OffsetMismatch(now.offset)),
        None => Err(ApiError::InvalidTicket),
    };
    lease.release().await;
    appended
}

fn past_length(length: u64) -> ApiError {
    ApiError::BadRequest(format!(
        "the chunk goes past Upload-Length ({length}); nothing was appended"
    ))
}

async fn append_held<S>(
    state: &AppState,
    upload: &TusUpload,
    lease: &Lease,
    (checksum, room): (Option<Checksum>, Option<Room>),
    left: u64,
    body: S,
) -> Result<TusUpload, ApiError>
where
    S: Stream<Item = Result<Bytes, IngestError>>,
{
    let bucket = &upload.chat_record.bucket;
    let mut sink = state
        .store
        .begin_append(bucket, &upload.id, &upload.stage, upload.offset)
        .await?;
    let mut hasher = checksum.as_ref().map(Checksum::hasher);
    let mut received = 0u64;
    let mut body = std::pin::pin!(body);
    let mut cut = loop {
        match body.next().await {
            None => break None,
            Some(Err(e)) => break Some(e),
            Some(Ok(bytes)) => {
                received += bytes.len() as u64;
                if received > left {
                    state.metrics.tus("past_length");
                    return Err(past_length(upload.length));
                }
                if let Some(room) = room.filter(|r| upload.offset + received > r.left) {
                    state.metrics.quota_refused("unknown", room.scope);
                    return Err(ApiError::QuotaExceeded(room.scope));
                }
                lease.held()?;
                if let Some(h) = &mut hasher {
                    h.update(&bytes);
                }
                sink.write(bytes).await?;
            }
        }
    };
    match &cut {
        Some(cut) => state.metrics.tus(cut.code()),
        None => {
            if let (Some(want), Some(h)) = (&checksum, hasher.take()) {
                if !want.matches(h) {
                    state.metrics.tus("checksum_mismatch");
                    return Err(ApiError::ChecksumMismatch);
                }
            }
        }
    }
    // Without a checksum, what arrived before a cut is kept (tus: the client resumes from the
    // offset HEAD gives); with one, nothing of it can be trusted.
    if let Some(cut) = cut.take_if(|_| hasher.is_some() || received == 0) {
        return Err(ApiError::from(cut));
    }
    let offset = upload.offset + received;
    let mut upload = upload.clone();
    if received > 0 {
        lease.held()?;
        let stage = sink.commit().await?;
        let last = offset == upload.length;
        if !state
            .catalog
            .tus_appended(
                &upload.id,
                &lease.token,
                upload.offset,
                (offset, &stage),
                !last,
            )
            .await?
        {
            return Err(not_held(state.catalog.tus_upload(&upload.id).await?));
        }
        sink.recorded().await;
        state.metrics.tus_bytes.inc_by(received);
        upload.offset = offset;
        upload.stage = stage;
    }
    if let Some(cut) = cut {
        return Err(ApiError::from(cut));
    }
    if upload.offset < upload.length {
        state.metrics.tus("appended");
        return Ok(upload);
    }
    let media = finish(state, &upload, lease).await?;
    upload.state = TusState::Done;
    upload.media_id = Some(media.id);
    Ok(upload)
}

/// Why a conditional write found the upload no longer held by this request, or no longer
/// open: taken over by another request, or ended meanwhile (erased, expired, terminated).
pub(super) fn not_held(now: Option<TusUpload>) -> ApiError {
    match now.map(|u| u.state) {
        Some(TusState::Open) => ApiError::UploadBusy,
        Some(TusState::Erased) => ApiError::Gone,
        Some(TusState::Expired) => ApiError::UploadExpired,
        _ => ApiError::InvalidTicket,
    }
}

/// All bytes are in: they become a media as `POST /media` would make it, in the chat
/// generation the upload began in. A refusal on the upload itself (no longer a member, over
/// quota, chat erased, empty) ends it and removes its bytes; trouble that may pass (storage)
/// leaves it open, finished by the next `HEAD` or `PATCH`.
async fn finish(state: &AppState, upload: &TusUpload, lease: &Lease) -> Result<Media, ApiError> {
    let member = same_membership(state, &upload.chat, &upload.user, &upload.membership).await?;
    let resumed = match member {
        false => Err(ApiError::NotAMember),
        true => {
            Upload {
                chat: upload.chat.clone(),
                user: upload.user.clone(),
                filename: upload.filename.clone(),
                ttl_seconds: upload.media_ttl_seconds,
                idempotency_key: Some(format!("tus:{}", upload.id)),
                digest: None,
                declared_size: Some(upload.length),
                framing: 0,
                // Checked atomically with the usage as the media is recorded, as for a POST.
                staged: (0, 0),
            }
            .resume(state, upload.chat_record.clone())
            .await
        }
    };
    let stored = match resumed {
        Ok(Begun::Existing(media)) => Ok(Stored::Existing(media)),
        Ok(Begun::Receiving(receiving)) => {
            let object = state
                .store
                .read_staged(
                    &upload.chat_record.bucket,
                    &upload.id,
                    &upload.stage,
                    upload.length,
                )
                .await?;
            let bytes = tokio_util::io::ReaderStream::with_capacity(object.body, READ_CHUNK)
                .map(|read| read.map_err(|e| IngestError::Storage(e.into())));
            lease.held()?;
            receiving.receive(state, bytes, None).await
        }
        Err(e) => Err(e),
    };
    let media = match stored {
        Ok(Stored::New(media) | Stored::Existing(media)) => media,
        Err(e) => {
            let ends = match &e {
                ApiError::Gone => Some(TusState::Erased),
                ApiError::NotAMember
                | ApiError::QuotaExceeded(_)
                | ApiError::TooLarge(_)
                | ApiError::EmptyFile
                | ApiError::IdempotencyConflict => Some(TusState::Terminated),
                _ => None,
            };
            if let Some(end) = ends {
                state
                    .catalog
                    .end_tus_upload(&upload.id, Some(&lease.token), end, None)
                    .await?;
                state.metrics.tus(e.code());
            }
            return Err(e);
        }
    };
    state
        .catalog
        .end_tus_upload(
            &upload.id,
            Some(&lease.token),
            TusState::Done,
            Some(&media.id),
        )
        .await?;
    state.metrics.tus("completed");
    Ok(media)
}

/// `DELETE` (termination): the upload ends and its bytes go; its ticket is spent. A finished
/// upload is a media of the chat now, which only the chat backend unsends.
pub async fn terminate(state: &AppState, ticket: &Ticket) -> Result<(), ApiError> {
    let upload = live(state, ticket).await?;
    if upload.state == TusState::Done {
        return Ok(());
    }
    if state
        .catalog
        .end_tus_upload(&upload.id, None, TusState::Terminated, None)
        .await?
    {
        state.metrics.tus("terminated");
        return Ok(());
    }
    match state.catalog.tus_upload(&upload.id).await? {
        Some(u) if u.state == TusState::Open => Err(ApiError::UploadBusy),
        _ => Err(ApiError::InvalidTicket),
    }
}

/// The sweeper's part: open uploads past `Upload-Expires` end and their bytes go; rows of
/// ended uploads are forgotten once their ticket can no longer be used either.
pub async fn sweep(state: &AppState) -> anyhow::Result<u64> {
    let mut ended = 0;
    for id in state.catalog.expired_tus_uploads(now(), 100).await? {
        if state
            .catalog
            .end_tus_upload(&id, None, TusState::Expired, None)
            .await?
        {
            ended += 1;
            state.metrics.tus("expired");
        }
    }
    // A day after the later of both ends, so that a late client still hears why.
    state
        .catalog
        .forget_tus_uploads(now() - Duration::from_secs(24 * 3600))
        .await?;
    Ok(ended)
}
