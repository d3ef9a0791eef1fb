//! A mock Kubernetes API server (kube-rs' tower-test pattern): a test plays
//! the server's side, request by request, and asserts each one exactly.

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{Handle, SendResponse};

pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose requests arrive at the returned handle.
pub fn client() -> (kube::Client, ApiHandle) {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(mock, "default"), handle)
}

/// Takes the next request, checks method and path (with query), returns
/// its JSON body (`Null` when empty) and the way to answer it.
pub async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (Value, SendResponse<Response<Body>>) {
    let (request, send) = handle.next_request().await.expect("a request");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().to_string(), path);
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

pub fn respond(send: SendResponse<Response<Body>>, status: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}
