//! [`SseClient`]: reads a `text/event-stream` response over real HTTP, event by event.

use std::time::Duration;

/// One server-sent event (or a comment line such as a keep-alive).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
    /// Comment lines (`: ...`) received before this event.
    pub comments: Vec<String>,
}

impl SseEvent {
    /// The data as JSON; panics when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// What [`SseClient::next`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    /// An event.
    Event(SseEvent),
    /// A comment line (keep-alive).
    Comment(String),
    /// The server closed the stream.
    End,
}

/// An open event stream.
#[derive(Debug)]
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    comments: Vec<String>,
}

impl SseClient {
    /// Sends `request` and checks for a 200 `text/event-stream`; panics otherwise.
    pub async fn open(request: reqwest::RequestBuilder) -> SseClient {
        let response = request
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("open the event stream");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status != 200 || !content_type.starts_with("text/event-stream") {
            let body = response.text().await.unwrap_or_default();
            panic!("expected a 200 event stream, got {status} ({content_type}): {body}");
        }
        SseClient {
            response,
            buffer: String::new(),
            comments: Vec::new(),
        }
    }

    /// The next event or comment, waiting at most `timeout`; panics on timeout.
    pub async fn next_item(&mut self, timeout: Duration) -> SseItem {
        tokio::time::timeout(timeout, self.read_item())
            .await
            .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
    }

    /// The next event (comments are kept with it), waiting at most `timeout`; `None` when
    /// the stream ended. Panics on timeout.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item(left).await {
                SseItem::Event(e) => return Some(e),
                SseItem::Comment(c) => self.comments.push(c),
                SseItem::End => return None,
            }
        }
    }

    async fn read_item(&mut self) -> SseItem {
        loop {
            if let Some(item) = self.parse_one() {
                return item;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                Ok(None) | Err(_) => return SseItem::End,
            }
        }
    }

    /// Takes one complete block (ending in a blank line) off the buffer.
    fn parse_one(&mut self) -> Option<SseItem> {
        let end = self.buffer.find("\n\n")?;
        let block: String = self.buffer.drain(..end + 2).collect();
        let mut event = SseEvent {
            event: "message".into(),
            ..SseEvent::default()
        };
        let mut data: Vec<&str> = Vec::new();
        let mut comment = None;
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(':') {
                comment = Some(c.trim().to_owned());
            } else if let Some((field, value)) = line.split_once(':') {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => data.push(value),
                    _ => {}
                }
            }
        }
        if data.is_empty() && event.id.is_none() {
            return Some(SseItem::Comment(comment.unwrap_or_default()));
        }
        event.data = data.join("\n");
        event.comments = std::mem::take(&mut self.comments);
        Some(SseItem::Event(event))
    }
}
