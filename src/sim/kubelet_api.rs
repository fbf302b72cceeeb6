//! `pods/log` and `pods/exec` on a cluster without a kubelet: the answers the real server
//! gives for a Pod that was never scheduled.

use super::Server;
use super::api::{Reply, Req, Target};
use super::errors::{ApiError, ApiResult};

pub fn logs(server: &Server, _req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    unscheduled(server, t, name)
}

pub fn exec(server: &Server, _req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    unscheduled(server, t, name)
}

fn unscheduled(server: &Server, t: &Target, name: &str) -> ApiResult<Reply> {
    let store = server.store();
    let ns = t.namespace.clone().unwrap_or_default();
    store.get(&t.rt.key(), &ns, name).ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")))
}
