//! Webhook deliveries over HTTP(S): the core's [`Transport`] on the shared outbound client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::events::{Delivery, Transport};

/// Posts deliveries; one pool for every sink.
pub struct Webhooks {
    client: super::http_client::HttpsClient<Full<Bytes>>,
}

impl Webhooks {
    /// A transport, or why the client could not be built.
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            client: super::http_client::build()?,
        })
    }
}

#[async_trait::async_trait]
impl Transport for Webhooks {
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Delivery {
        let mut req = http::Request::post(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let attempt = async {
            let resp = self.client.request(req).await.map_err(|e| {
                use std::error::Error;
                match e.source() {
                    Some(s) => format!("{e}: {s}"),
                    None => e.to_string(),
                }
            })?;
            let status = resp.status().as_u16();
            // Read (and drop) the answer so the connection goes back to the pool.
            let _ = resp.into_body().collect().await;
            Ok(status)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        }
    }
}
