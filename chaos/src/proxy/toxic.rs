//! Toxics in Toxiproxy's JSON shape, their validation, and their conversion to noxious' toxics
//! (every type but `reset_peer`, which the front implements).

use std::collections::BTreeMap;

use noxious::toxic::{StreamDirection, Toxic, ToxicKind};
use serde::{Deserialize, Serialize};

/// One toxic as the API shows it: `{"name", "type", "stream", "toxicity", "attributes"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToxicSpec {
    /// Unique within its proxy; default `<type>_<stream>`.
    #[serde(default)]
    pub name: String,
    /// `latency`, `bandwidth`, `timeout`, `slow_close`, `limit_data`, `slicer` or `reset_peer`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `downstream` (server to client; the default) or `upstream`.
    #[serde(default = "downstream")]
    pub stream: String,
    /// The probability that a connection gets the toxic, 0 to 1 (default 1).
    #[serde(default = "one")]
    pub toxicity: f32,
    /// The type's attributes (integers; a missing one is 0, as in Toxiproxy).
    #[serde(default)]
    pub attributes: BTreeMap<String, u64>,
}

fn downstream() -> String {
    "downstream".to_string()
}

fn one() -> f32 {
    1.0
}

/// The attribute names of each type.
fn attribute_names(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "latency" => &["latency", "jitter"],
        "bandwidth" => &["rate"],
        "timeout" => &["timeout"],
        "slow_close" => &["delay"],
        "limit_data" => &["bytes"],
        "slicer" => &["average_size", "size_variation", "delay"],
        "reset_peer" => &["timeout"],
        _ => return None,
    })
}

/// The stream a toxic applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client to upstream.
    Upstream,
    /// Upstream to client.
    Downstream,
}

impl ToxicSpec {
    /// Checks the type, stream and toxicity, fills the default name and the missing attributes
    /// with 0, and drops unknown attributes.
    ///
    /// # Errors
    /// A message for a `400 Bad Request`.
    pub(crate) fn normalized(mut self) -> Result<Self, String> {
        let names = attribute_names(&self.kind).ok_or_else(|| format!("unknown toxic type {:?}", self.kind))?;
        if self.stream.is_empty() {
            self.stream = downstream();
        }
        if self.stream != "upstream" && self.stream != "downstream" {
            return Err(format!("stream must be upstream or downstream, got {:?}", self.stream));
        }
        if !(0.0..=1.0).contains(&self.toxicity) {
            return Err(format!("toxicity must be within 0..=1, got {}", self.toxicity));
        }
        if self.name.is_empty() {
            self.name = format!("{}_{}", self.kind, self.stream);
        }
        self.attributes.retain(|k, _| names.contains(&k.as_str()));
        for n in names {
            self.attributes.entry((*n).to_string()).or_insert(0);
        }
        if self.kind == "slicer" && self.attr("size_variation") >= self.attr("average_size").max(1) {
            return Err("slicer: size_variation must be smaller than average_size (and that above 0)".into());
        }
        Ok(self)
    }

    /// An attribute (0 when missing).
    pub(crate) fn attr(&self, name: &str) -> u64 {
        self.attributes.get(name).copied().unwrap_or(0)
    }

    /// The direction.
    pub(crate) fn direction(&self) -> Direction {
        if self.stream == "upstream" {
            Direction::Upstream
        } else {
            Direction::Downstream
        }
    }

    /// Whether the front implements it (`reset_peer`) rather than noxious.
    pub(crate) fn is_front(&self) -> bool {
        self.kind == "reset_peer"
    }

    /// The noxious toxic (`None` for `reset_peer`).
    pub(crate) fn to_noxious(&self) -> Option<Toxic> {
        let kind = match self.kind.as_str() {
            "latency" => ToxicKind::Latency {
                latency: self.attr("latency"),
                jitter: self.attr("jitter"),
            },
            "bandwidth" => ToxicKind::Bandwidth {
                rate: self.attr("rate"),
            },
            "timeout" => ToxicKind::Timeout {
                timeout: self.attr("timeout"),
            },
            "slow_close" => ToxicKind::SlowClose {
                delay: self.attr("delay"),
            },
            "limit_data" => ToxicKind::LimitData {
                bytes: self.attr("bytes"),
            },
            "slicer" => ToxicKind::Slicer {
                average_size: self.attr("average_size"),
                size_variation: self.attr("size_variation"),
                delay: self.attr("delay"),
            },
            _ => return None,
        };
        Some(Toxic {
            kind,
            name: self.name.clone(),
            toxicity: self.toxicity,
            direction: match self.direction() {
                Direction::Upstream => StreamDirection::Upstream,
                Direction::Downstream => StreamDirection::Downstream,
            },
        })
    }

    /// Applies an update (`POST /proxies/{p}/toxics/{t}`): attributes are merged, toxicity
    /// replaced when given; name, type and stream stay.
    pub(crate) fn updated(&self, update: ToxicUpdate) -> Result<Self, String> {
        let mut next = self.clone();
        if let Some(t) = update.toxicity {
            next.toxicity = t;
        }
        if let Some(attrs) = update.attributes {
            next.attributes.extend(attrs);
        }
        next.normalized()
    }
}

/// The body of a toxic update: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ToxicUpdate {
    /// New toxicity.
    pub(crate) toxicity: Option<f32>,
    /// Attributes to change.
    pub(crate) attributes: Option<BTreeMap<String, u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ToxicSpec {
        serde_json::from_str(json).unwrap()
    }

    /// A toxic without name, stream or some attributes gets Toxiproxy's defaults.
    #[test]
    fn defaults_are_filled_in() {
        let t = spec(r#"{"type":"latency","attributes":{"latency":300,"other":1}}"#)
            .normalized()
            .unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, "downstream");
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(t.attr("jitter"), 0);
        assert!(!t.attributes.contains_key("other"));
        let n = t.to_noxious().unwrap();
        assert_eq!(
            n.kind,
            ToxicKind::Latency {
                latency: 300,
                jitter: 0
            }
        );
        assert_eq!(n.direction, StreamDirection::Downstream);
    }

    /// Unknown types, bad streams and toxicities are refused.
    #[test]
    fn bad_toxics_are_refused() {
        assert!(spec(r#"{"type":"nope"}"#).normalized().is_err());
        assert!(spec(r#"{"type":"timeout","stream":"sideways"}"#).normalized().is_err());
        assert!(spec(r#"{"type":"timeout","toxicity":1.5}"#).normalized().is_err());
        assert!(
            spec(r#"{"type":"slicer","attributes":{"average_size":10,"size_variation":10}}"#)
                .normalized()
                .is_err()
        );
    }

    /// `reset_peer` is the front's; the others convert to noxious toxics.
    #[test]
    fn reset_peer_is_not_a_noxious_toxic() {
        let r = spec(r#"{"type":"reset_peer","stream":"upstream"}"#)
            .normalized()
            .unwrap();
        assert!(r.is_front());
        assert!(r.to_noxious().is_none());
        assert_eq!(r.direction(), Direction::Upstream);
        assert_eq!(r.attr("timeout"), 0);
        let l = spec(r#"{"type":"limit_data","attributes":{"bytes":5}}"#)
            .normalized()
            .unwrap();
        assert_eq!(l.to_noxious().unwrap().kind, ToxicKind::LimitData { bytes: 5 });
    }

    /// An update merges attributes and keeps the name; the JSON round-trips in Toxiproxy's shape.
    #[test]
    fn updates_merge_attributes() {
        let t = spec(r#"{"type":"latency","attributes":{"latency":300,"jitter":50}}"#)
            .normalized()
            .unwrap();
        let u = t
            .updated(ToxicUpdate {
                toxicity: Some(0.5),
                attributes: Some([("latency".to_string(), 10)].into()),
            })
            .unwrap();
        assert_eq!((u.attr("latency"), u.attr("jitter"), u.toxicity), (10, 50, 0.5));
        assert_eq!(u.name, t.name);
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v["type"], "latency");
        assert_eq!(v["stream"], "downstream");
        assert_eq!(v["attributes"]["jitter"], 50);
    }
}
