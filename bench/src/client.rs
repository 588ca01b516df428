//! The bench's HTTP client of satchel's API: only what the workloads call.

use anyhow::{bail, Context};
use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// How a processed upload ended.
pub enum Outcome {
    Ready,
    Failed(String),
    TimedOut,
}

impl Api {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Api {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .build()?,
            base: base.to_owned(),
            token: token.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A chat of its own for every workload, so a shared deployment's data is never touched
    /// and everything the bench stored can be erased with the chat.
    pub async fn new_chat(&self, user: &str) -> anyhow::Result<String> {
        let chat = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
        let r = self
            .http
            .put(self.url(&format!("/v1/chats/{chat}/members/{user}")))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if r.status() != StatusCode::NO_CONTENT {
            bail!("adding a member answered {}", r.status());
        }
        Ok(chat)
    }

    pub async fn delete_chat(&self, chat: &str) {
        let _ = self
            .http
            .delete(self.url(&format!("/v1/chats/{chat}")))
            .bearer_auth(&self.token)
            .send()
            .await;
    }

    /// Uploads `body` and returns the new media's id.
    pub async fn upload(
        &self,
        chat: &str,
        user: &str,
        filename: &str,
        body: Bytes,
    ) -> anyhow::Result<String> {
        let r = self
            .http
            .post(self.url(&format!("/v1/chats/{chat}/media")))
            .query(&[("user", user), ("filename", filename)])
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if status != StatusCode::CREATED {
            bail!("upload answered {status}: {text}");
        }
        let media: Value = serde_json::from_str(&text).context("upload answer")?;
        media["id"]
            .as_str()
            .map(str::to_owned)
            .context("upload answer has no id")
    }

    pub async fn status(&self, id: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(self.url(&format!("/v1/media/{id}")))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET media answered {}", r.status());
        }
        Ok(r.json().await?)
    }

    /// Polls until the media is no longer `processing`.
    pub async fn wait_done(&self, id: &str, every: Duration, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.status(id).await {
                Ok(m) if m["status"] == "ready" => return Outcome::Ready,
                Ok(m) if m["status"] == "failed" => {
                    return Outcome::Failed(m["error"]["code"].as_str().unwrap_or("?").into())
                }
                _ => tokio::time::sleep(every).await,
            }
        }
        Outcome::TimedOut
    }

    pub async fn issue_link(&self, id: &str, user: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .post(self.url(&format!("/v1/media/{id}/links")))
            .bearer_auth(&self.token)
            .json(&json!({"user": user, "variants": ["original"], "ttl_seconds": 300}))
            .send()
            .await?;
        if r.status() != StatusCode::OK {
            bail!("link issuance answered {}", r.status());
        }
        r.bytes().await?;
        Ok(())
    }

    pub async fn healthz(&self) -> anyhow::Result<()> {
        let r = self.http.get(self.url("/healthz")).send().await?;
        if !r.status().is_success() {
            bail!("healthz answered {}", r.status());
        }
        r.bytes().await?;
        Ok(())
    }

    /// Fails at once on a wrong token, rather than in every workload.
    pub async fn check_token(&self) -> anyhow::Result<()> {
        let r = self
            .http
            .get(self.url("/v1/chats/bench-token-check/members"))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if r.status() == StatusCode::UNAUTHORIZED {
            bail!("the token is not accepted (401)");
        }
        Ok(())
    }

    pub async fn readyz(&self) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(self.url("/readyz"))
            .send()
            .await?
            .json()
            .await?)
    }
}
