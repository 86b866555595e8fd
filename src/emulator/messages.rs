//! The emulator's `alipay.open.public.message.single.send`: template registry, recipient checks,
//! QPS cap and delivery log (being written).

use std::path::PathBuf;

use super::followers::Followers;
use crate::error::Result;

/// What `alipaylife emulate` passes in from its flags.
#[derive(Clone, Debug, Default)]
pub struct MessagesConfig {
    /// `--templates FILE`: template IDs and their keyword fields.
    pub templates: Option<PathBuf>,
    /// `--qps-limit N`: single.send calls per second beyond which the answer is 40005.
    pub qps_limit: Option<u32>,
    /// `--deliveries PATH`: JSON lines, one per delivered message.
    pub deliveries: Option<PathBuf>,
}

/// The answer to one single.send call.
pub enum SendOutcome {
    /// A business answer (code 10000 or 40004 with a sub_code): the node object, to be signed.
    Node(serde_json::Value),
    /// Over the QPS cap: a gateway-level 40005.
    RateLimited,
}

pub struct Messages {}

impl Messages {
    pub fn new(config: MessagesConfig) -> Result<Messages> {
        let _ = config;
        Ok(Messages {})
    }

    pub fn single_send(&self, biz: &serde_json::Value, followers: &Followers) -> SendOutcome {
        let _ = (biz, followers);
        SendOutcome::Node(serde_json::json!({
            "code": "40004", "msg": "Business Failed",
            "sub_code": "MSG_TEMPLATE_NOT_EXIST", "sub_msg": "消息模板不存在"
        }))
    }
}
