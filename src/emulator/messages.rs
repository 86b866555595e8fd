//! The emulator's `alipay.open.public.message.single.send`: template registry, recipient checks,
//! QPS cap and delivery log.
//!
//! Template file (`emulate --templates FILE`): a JSON object mapping each template ID to the
//! context fields it requires, in order, e.g.
//!
//! ```json
//! {"TPL1": ["first", "keyword1", "keyword2", "remark"], "TPL_SHORT": ["keyword1"]}
//! ```
//!
//! Without a file the registry holds one template, `DEMO_TEMPLATE_001` (first, keyword1, keyword2,
//! remark). Checks, in order: the QPS cap (`--qps-limit`, a sliding one-second window of accepted
//! calls; over it, a gateway-level 40005), a recipient (`to_user_id` or `to_open_id`), the template
//! (`MSG_TEMPLATE_NOT_EXIST`, 40004 "Business Failed", "消息模板不存在"), every required field with
//! a non-empty value (`MSG_TEMPLATE_CONTEXT_LACK_KEY`), `action_name` within 8 Chinese / 16 Latin
//! characters (`ILLEGAL_ARGUMENT_PARAMS`), then the recipient: `to_open_id` only on an OpenID app
//! (`OPENID_INVALID` otherwise), and it must be a follower (`MSG_SD_NOFOLLOW`). A delivered message
//! is appended to the delivery log (`--deliveries PATH`, one JSON object a line: time, to_user_id
//! or to_open_id, template_id, context) and flushed before the answer is built, so a `lost` fault
//! (processed, answer dropped) still shows in the log.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::followers::Followers;
use crate::error::{Error, Result};

pub const DEFAULT_TEMPLATE: &str = "DEMO_TEMPLATE_001";
const DEFAULT_FIELDS: [&str; 4] = ["first", "keyword1", "keyword2", "remark"];

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

pub struct Messages {
    templates: BTreeMap<String, Vec<String>>,
    qps_limit: Option<u32>,
    window: Mutex<VecDeque<Instant>>,
    deliveries: Option<Mutex<File>>,
}

fn business(sub_code: &str, sub_msg: &str) -> SendOutcome {
    SendOutcome::Node(json!({
        "code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg
    }))
}

/// Parse a template file's text.
pub fn parse_templates(text: &str) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let map: BTreeMap<String, Vec<String>> = serde_json::from_str(text).map_err(|e| {
        format!(
            "{e}; expected a JSON object of template IDs to field lists, e.g. \
             {{\"TPL1\": [\"first\", \"keyword1\", \"keyword2\", \"remark\"]}}"
        )
    })?;
    if map.is_empty() {
        return Err("no templates in the file".to_string());
    }
    Ok(map)
}

impl Messages {
    pub fn new(config: MessagesConfig) -> Result<Messages> {
        let templates = match &config.templates {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read --templates {}: {e}", path.display()))
                })?;
                parse_templates(&text)
                    .map_err(|e| Error::Config(format!("--templates {}: {e}", path.display())))?
            }
            None => BTreeMap::from([(
                DEFAULT_TEMPLATE.to_string(),
                DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect(),
            )]),
        };
        let deliveries = match &config.deliveries {
            Some(path) => Some(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        Error::io(format!("cannot open --deliveries {}", path.display()), e)
                    })?,
            )),
            None => None,
        };
        if config.qps_limit == Some(0) {
            return Err(Error::Usage("--qps-limit must be at least 1".to_string()));
        }
        Ok(Messages {
            templates,
            qps_limit: config.qps_limit,
            window: Mutex::new(VecDeque::new()),
            deliveries,
        })
    }

    /// Admit a call under the QPS cap: at most `limit` accepted calls in any one second.
    fn admit(&self) -> bool {
        let Some(limit) = self.qps_limit else {
            return true;
        };
        let now = Instant::now();
        let mut window = self.window.lock().expect("qps window");
        while window
            .front()
            .is_some_and(|&t| now.duration_since(t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return false;
        }
        window.push_back(now);
        true
    }

    pub fn single_send(&self, biz: &serde_json::Value, followers: &Followers) -> SendOutcome {
        if !self.admit() {
            return SendOutcome::RateLimited;
        }
        let text = |k: &str| biz.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (field, to) = match (text("to_user_id"), text("to_open_id")) {
            (Some(id), _) => ("to_user_id", id),
            (None, Some(id)) => ("to_open_id", id),
            (None, None) => {
                return business(
                    "ILLEGAL_ARGUMENT_PARAMS",
                    "参数不合法: 缺少 to_user_id 或 to_open_id",
                );
            }
        };
        let template = biz.get("template").unwrap_or(&Value::Null);
        let Some(template_id) = template
            .get("template_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return business("MSG_TEMPLATE_ID_INVALID", "消息模板ID无效");
        };
        let Some(fields) = self.templates.get(template_id) else {
            return business("MSG_TEMPLATE_NOT_EXIST", "消息模板不存在");
        };
        let context = template.get("context").unwrap_or(&Value::Null);
        for f in fields {
            let filled = context
                .get(f)
                .and_then(|v| v.get("value"))
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty());
            if !filled {
                return business(
                    "MSG_TEMPLATE_CONTEXT_LACK_KEY",
                    &format!("模板参数缺失: {f}"),
                );
            }
        }
        if let Some(action) = context.get("action_name").and_then(Value::as_str) {
            let units: usize = action
                .chars()
                .map(|c| if c.is_ascii() { 1 } else { 2 })
                .sum();
            if units > 16 {
                return business(
                    "ILLEGAL_ARGUMENT_PARAMS",
                    "参数不合法: action_name 不能超过8个汉字或16个英文字符",
                );
            }
        }
        if field == "to_open_id" && !followers.openid {
            return business("OPENID_INVALID", "openid 无效: 该应用未启用 openid");
        }
        let follows = followers.index_of(to).is_some_and(|i| i < followers.count);
        if !follows {
            return business("MSG_SD_NOFOLLOW", "用户未关注生活号");
        }
        if let Some(log) = &self.deliveries {
            let mut line = json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                field: to,
                "template_id": template_id,
                "context": context,
            })
            .to_string();
            line.push('\n');
            let mut file = log.lock().expect("delivery log");
            if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
                eprintln!("emulator: error: writing the delivery log: {e}");
                return business("SYSTEM_ERROR", "系统异常");
            }
        }
        SendOutcome::Node(json!({"code": "10000", "msg": "Success"}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::followers::EndStyle;

    fn followers(openid: bool) -> Followers {
        Followers {
            count: 3,
            openid,
            end: EndStyle::Empty,
        }
    }

    fn sub_code(o: SendOutcome) -> String {
        match o {
            SendOutcome::Node(v) => v
                .get("sub_code")
                .and_then(Value::as_str)
                .unwrap_or("ok")
                .to_string(),
            SendOutcome::RateLimited => "40005".to_string(),
        }
    }

    fn biz(to: &str, template: &str, fields: &[&str]) -> Value {
        let mut context = serde_json::Map::new();
        for f in fields {
            context.insert(f.to_string(), json!({"color": "#000", "value": "v"}));
        }
        json!({"to_user_id": to, "template": {"template_id": template, "context": context}})
    }

    #[test]
    fn checks_in_order() {
        let m = Messages::new(MessagesConfig::default()).unwrap();
        let f = followers(false);
        let all = &DEFAULT_FIELDS[..];
        assert_eq!(
            sub_code(m.single_send(&biz(&f.id(0), DEFAULT_TEMPLATE, all), &f)),
            "ok"
        );
        assert_eq!(
            sub_code(m.single_send(&biz(&f.id(3), DEFAULT_TEMPLATE, all), &f)),
            "MSG_SD_NOFOLLOW",
            "the past-the-end cursor ID is not a follower"
        );
        assert_eq!(
            sub_code(m.single_send(&biz(&f.id(0), "NOPE", all), &f)),
            "MSG_TEMPLATE_NOT_EXIST"
        );
        assert_eq!(
            sub_code(m.single_send(&biz(&f.id(0), DEFAULT_TEMPLATE, &all[..3]), &f)),
            "MSG_TEMPLATE_CONTEXT_LACK_KEY"
        );
        let mut long = biz(&f.id(0), DEFAULT_TEMPLATE, all);
        long["template"]["context"]["action_name"] = json!("查看详情查看详情查");
        assert_eq!(
            sub_code(m.single_send(&long, &f)),
            "ILLEGAL_ARGUMENT_PARAMS"
        );
        let open =
            json!({"to_open_id": f.id(0), "template": biz("", DEFAULT_TEMPLATE, all)["template"]});
        assert_eq!(sub_code(m.single_send(&open, &f)), "OPENID_INVALID");
        let o = followers(true);
        let open =
            json!({"to_open_id": o.id(1), "template": biz("", DEFAULT_TEMPLATE, all)["template"]});
        assert_eq!(sub_code(m.single_send(&open, &o)), "ok");
    }

    #[test]
    fn qps_cap_is_a_sliding_window() {
        let m = Messages::new(MessagesConfig {
            qps_limit: Some(3),
            ..Default::default()
        })
        .unwrap();
        let f = followers(false);
        let b = biz(&f.id(0), DEFAULT_TEMPLATE, &DEFAULT_FIELDS);
        let got: Vec<String> = (0..5).map(|_| sub_code(m.single_send(&b, &f))).collect();
        assert_eq!(got, ["ok", "ok", "ok", "40005", "40005"]);
    }

    #[test]
    fn template_files_parse() {
        let t = parse_templates(r#"{"A": ["first", "keyword1"]}"#).unwrap();
        assert_eq!(t["A"], ["first", "keyword1"]);
        assert!(parse_templates("{}").is_err());
        assert!(
            parse_templates("A,first")
                .unwrap_err()
                .contains("expected a JSON object")
        );
    }
}
