//! The one place that turns a [`Rejection`] into what the client sees: an RFC 9457 `application/problem+json`
//! body with status, title, stable code and request id — never the operator detail.

use crate::body::ResponseBody;
use crate::pipeline::Rejection;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::Response;

pub const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// Builds the client-facing problem response for a rejection.
pub fn response(rejection: &Rejection, request_id: &str) -> Response<ResponseBody> {
    with_status(rejection, request_id, rejection.status())
}

/// The same with another status than the code's own (a hidden upstream error keeps the upstream's status).
pub fn with_status(rejection: &Rejection, request_id: &str, status: http::StatusCode) -> Response<ResponseBody> {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "code": rejection.code.client_str(),
        "request_id": request_id,
    });
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(ResponseBody::full(bytes.clone()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, PROBLEM_JSON);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in &rejection.headers {
        headers.append(name.clone(), value.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Code;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn problem_body_has_code_and_request_id_but_no_detail() {
        let rej = Rejection::new(Code::RouteNotFound, "secret internal detail");
        let resp = response(&rej, "req-1");
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "route.not_found");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["status"], 404);
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
}
