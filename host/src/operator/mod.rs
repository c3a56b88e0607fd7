//! `headroom`'s operator surface, built on the proxy and the records: the record endpoints
//! (`GET /v1/headroom/{metrics,summary,validate}`) and the setup checks behind `headroom
//! validate`. The proxy reaches it only through its [`HostEndpoints`] hook.
//!
//! - [`endpoints`]: the endpoints, their parameters and documents.
//! - [`validate`]: the setup checks.

pub mod endpoints;
pub mod validate;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Response, Uri};

use crate::proxy::HostEndpoints;
use crate::proxy::body::ClientBody;
use validate::ValidateConfig;

/// The record endpoints as the proxy's [`HostEndpoints`].
#[derive(Clone, Debug, Default)]
pub struct RecordEndpoints {
    /// What `/v1/headroom/validate` checks (`None`: a 503 says it is not set up).
    validate: Option<Arc<ValidateConfig>>,
}

impl RecordEndpoints {
    /// The endpoints, `/validate` checking `validate`.
    pub fn new(validate: Option<ValidateConfig>) -> Self {
        Self {
            validate: validate.map(Arc::new),
        }
    }
}

impl HostEndpoints for RecordEndpoints {
    fn paths(&self) -> &[&'static str] {
        &[
            endpoints::METRICS_PATH,
            endpoints::SUMMARY_PATH,
            endpoints::VALIDATE_PATH,
        ]
    }

    fn answer<'a>(
        &'a self,
        method: &'a Method,
        uri: &'a Uri,
    ) -> Pin<Box<dyn Future<Output = Option<Response<ClientBody>>> + 'a>> {
        Box::pin(endpoints::answer(method, uri, self.validate.clone()))
    }
}
