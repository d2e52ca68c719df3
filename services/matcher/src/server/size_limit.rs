//! gRPC's status code table says an over-size request message is RESOURCE_EXHAUSTED;
//! tonic reports OUT_OF_RANGE with a technical message. This layer rewrites that one
//! trailers-only response into the documented code and a message a person understands.

use http::HeaderValue;
use tonic::body::Body;

pub fn layer(
    limit: usize,
) -> tower::util::MapResponseLayer<impl Fn(http::Response<Body>) -> http::Response<Body> + Clone> {
    tower::util::MapResponseLayer::new(move |mut resp: http::Response<Body>| {
        let headers = resp.headers();
        let too_large = headers.get("grpc-status").is_some_and(|v| v == "11")
            && headers.get("grpc-message").and_then(|m| m.to_str().ok()).is_some_and(|m| {
                m.contains("message%20length%20too%20large") || m.contains("message length too large")
            });
        if too_large {
            let message = format!(
                "the request is larger than this server's limit of {limit} bytes (LOOKALIKE_MAX_MESSAGE_BYTES); send a smaller photo"
            )
            .replace(' ', "%20");
            let headers = resp.headers_mut();
            headers.insert("grpc-status", HeaderValue::from_static("8"));
            if let Ok(v) = HeaderValue::from_str(&message) {
                headers.insert("grpc-message", v);
            }
        }
        resp
    })
}
