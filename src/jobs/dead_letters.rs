//! Jobs the broker gave up on (their consumer died `delivery_limit` times, e.g. a decoder that
//! crashes the process) arrive in `<prefix>.jobs.dead`: their media are marked failed.

use crate::catalog::JobResult;
use crate::domain::{MediaError, MediaId};
use crate::queue::amqp::consume::Ended;
use crate::queue::amqp::{hang_up, Broker};
use crate::state::AppState;
use futures_util::StreamExt;
use lapin::options::BasicAckOptions;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(state: AppState, broker: Arc<Broker>) {
    loop {
        match broker
            .consume(&[broker.dead_queue()], 8, "satchel-dead-letters")
            .await
        {
            Ok((connection, consumers)) => {
                let mut deliveries = futures_util::stream::select_all(consumers);
                let ended = loop {
                    let delivery = match broker.until_closed(deliveries.next()).await {
                        None => break Ended::Closing,
                        Some(Some(Ok(delivery))) => delivery,
                        Some(_) => break Ended::Failed,
                    };
                    let id = serde_json::from_slice::<serde_json::Value>(&delivery.data)
                        .ok()
                        .and_then(|v| v["media_id"].as_str().and_then(MediaId::parse));
                    if let Some(id) = id {
                        mark_failed(&state, &id).await;
                    }
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                };
                hang_up(connection, ended.reason()).await;
                if ended == Ended::Closing {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot consume dead letters; retrying"),
        }
        let pause = tokio::time::sleep(Duration::from_secs(2));
        if broker.until_closed(pause).await.is_none() {
            return;
        }
    }
}

async fn mark_failed(state: &AppState, id: &MediaId) {
    let error = MediaError {
        code: crate::codes::media::DEAD_LETTERED.code.into(),
        message: "processing crashed repeatedly; the job was given up".into(),
    };
    match state.catalog.finish_job(id, JobResult::Failed(error)).await {
        Ok(Some(media)) => {
            tracing::warn!(media_id = %id, "job dead-lettered; media failed");
            state.events.status_changed(&media);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(media_id = %id, error = %e, "cannot mark a dead-lettered media failed")
        }
    }
}
