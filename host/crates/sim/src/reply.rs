//! The HTTP answer every handler of the simulator returns.

use serde_json::{Value, json};

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, v: &Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    /// An HTML reply.
    pub fn html(page: &str) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            content_type: "text/html;charset=UTF-8",
            body: page.as_bytes().to_vec(),
        }
    }

    /// A redirect to the login page.
    pub fn to_login() -> Self {
        Self {
            status: 302,
            headers: vec![("location", "/login.html".into())],
            content_type: "text/html",
            body: Vec::new(),
        }
    }

    /// A plain-text reply.
    pub(crate) fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: "text/plain",
            body: text.as_bytes().to_vec(),
        }
    }

    /// A `400` with the server's failure envelope.
    pub(crate) fn bad_request(message: &str) -> Self {
        Self::json(400, &json!({"status": "FAILURE", "message": message}))
    }
}
