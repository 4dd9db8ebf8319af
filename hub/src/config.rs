//! The hub's configuration: one TOML file plus environment overrides, loaded with figment.
//!
//! Precedence, lowest first: the defaults (`impl Default`), the TOML file (`--config` or
//! `MT5_CONFIG`), the short env names (`MT5_REDIS_URL`, `MT5_REDIS_PASSWORD`, `MT5_HTTP_ADDR`,
//! `MT5_EODHD_BASE_URL`), then `MT5_<SECTION>__<KEY>` (nested sections joined by `__`, e.g.
//! `MT5_NEWS__EODHD__BASE_URL`). Unknown keys, in the file or in `MT5_*__*` variables, are errors
//! that name the key.
//!
//! Secrets are read only from their own env vars: the EODHD API key from `EODHD_API_KEY`, the
//! DingTalk robot's access token from `DINGTALK_ACCESS_TOKEN` and its signing secret from
//! `DINGTALK_SECRET`, the gateway's bearer token from `MT5_GATEWAY_TOKEN`, the sentinels'
//! password from `MT5_REDIS_SENTINEL_PASSWORD`. Setting `news.eodhd.api_key`,
//! `alerts.access_token`, `alerts.secret`, `http.gateway.token` or `redis.sentinel_password` in
//! the file or through another `MT5_*` variable is an error.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use mt5_bus::{BusConfig, InvalidConfig, RedisConfig};
use mt5_news::{EodhdConfig, FetcherConfig, FilterConfig};
use serde::{Deserialize, Serialize};

use crate::gateway::GatewayConfig;
use crate::relay::AlertsConfig;

/// Env var naming the config file (the same as `--config`).
pub(crate) const CONFIG_ENV: &str = "MT5_CONFIG";
/// Prefix of every override variable.
const ENV_PREFIX: &str = "MT5_";
/// Separator of nested keys in override variables.
const ENV_SEPARATOR: &str = "__";
/// The short names of common keys: env var → dotted key.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("MT5_REDIS_URL", "redis.url"),
    ("MT5_REDIS_PASSWORD", "redis.password"),
    ("MT5_HTTP_ADDR", "http.addr"),
    ("MT5_EODHD_BASE_URL", "news.eodhd.base_url"),
    ("MT5_DINGTALK_URL", "alerts.dingtalk_url"),
];
/// The env var holding the EODHD API key, the only way to set `news.eodhd.api_key`.
pub(crate) const EODHD_API_KEY_ENV: &str = "EODHD_API_KEY";
/// The dotted key of the EODHD API key.
const EODHD_API_KEY: &str = "news.eodhd.api_key";
/// The name of the `EODHD_API_KEY` provider in error messages.
const API_KEY_SOURCE: &str = "environment variable EODHD_API_KEY";
/// The env var holding the DingTalk robot's access token, the only way to set it.
pub(crate) const DINGTALK_ACCESS_TOKEN_ENV: &str = "DINGTALK_ACCESS_TOKEN";
/// The dotted key of the DingTalk access token.
const DINGTALK_ACCESS_TOKEN: &str = "alerts.access_token";
/// The env var holding the DingTalk robot's signing secret, the only way to set it.
const DINGTALK_SECRET_ENV: &str = "DINGTALK_SECRET";
/// The dotted key of the DingTalk signing secret.
const DINGTALK_SECRET: &str = "alerts.secret";
/// The env var holding the gateway's bearer token, the only way to set it.
pub(crate) const GATEWAY_TOKEN_ENV: &str = "MT5_GATEWAY_TOKEN";
/// The dotted key of the gateway's bearer token.
const GATEWAY_TOKEN: &str = "http.gateway.token";
/// The env var holding the sentinels' password, the only way to set it.
pub(crate) const SENTINEL_PASSWORD_ENV: &str = "MT5_REDIS_SENTINEL_PASSWORD";
/// The dotted key of the sentinels' password.
const SENTINEL_PASSWORD: &str = "redis.sentinel_password";
/// Secrets read only from their own env var: (env var, dotted key, provider name).
const SECRET_ENVS: &[(&str, &str, &str)] = &[
    (EODHD_API_KEY_ENV, EODHD_API_KEY, API_KEY_SOURCE),
    (
        DINGTALK_ACCESS_TOKEN_ENV,
        DINGTALK_ACCESS_TOKEN,
        "environment variable DINGTALK_ACCESS_TOKEN",
    ),
    (
        DINGTALK_SECRET_ENV,
        DINGTALK_SECRET,
        "environment variable DINGTALK_SECRET",
    ),
    (
        GATEWAY_TOKEN_ENV,
        GATEWAY_TOKEN,
        "environment variable MT5_GATEWAY_TOKEN",
    ),
    (
        SENTINEL_PASSWORD_ENV,
        SENTINEL_PASSWORD,
        "environment variable MT5_REDIS_SENTINEL_PASSWORD",
    ),
];
/// The name of the env override providers in error messages.
const ENV_SOURCE: &str = "environment variables";
/// Dotted keys whose values are secrets or may hold one: never echoed in error messages.
const SECRET_KEYS: &[&str] = &[
    "redis.url",
    "redis.password",
    SENTINEL_PASSWORD,
    EODHD_API_KEY,
    DINGTALK_ACCESS_TOKEN,
    DINGTALK_SECRET,
    GATEWAY_TOKEN,
];

/// `[http]`: where the HTTP servers (metrics, health, gateway) listen.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub(crate) struct HttpConfig {
    /// Listen address of the HTTP server (`/metrics`, `/healthz`, `/readyz`). Default
    /// `127.0.0.1:9464` (env `MT5_HTTP_ADDR`).
    pub(crate) addr: SocketAddr,
    /// How often the in-process stats collector refreshes the stream gauges
    /// (`mt5_stream_length`, lag, pending, oldest pending age, live consumers) from `XINFO`,
    /// in ms; every scrape of `/metrics` refreshes them too. 0 = only on scrapes. Default 5000.
    pub(crate) stats_interval_ms: u64,
    /// `[http.gateway]`: the HTTP gateway of `mt5-hub gateway` (the token only from env
    /// `MT5_GATEWAY_TOKEN`).
    pub(crate) gateway: GatewayConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            stats_interval_ms: 5000,
            gateway: GatewayConfig::default(),
        }
    }
}

/// `[news]`: the news pipeline (`[news.eodhd]`, `[news.fetcher]`, `[news.filter]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub(crate) struct NewsConfig {
    /// `[news.eodhd]`: the EODHD client (the key only from env `EODHD_API_KEY`).
    pub(crate) eodhd: EodhdConfig,
    /// `[news.fetcher]`: watchlist, schedule and where raw news go.
    pub(crate) fetcher: FetcherConfig,
    /// `[news.filter]`: which raw news pass to the filtered stream.
    pub(crate) filter: FilterConfig,
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub(crate) struct HubConfig {
    /// `[redis]`.
    pub(crate) redis: RedisConfig,
    /// `[bus]`.
    pub(crate) bus: BusConfig,
    /// `[http]`.
    pub(crate) http: HttpConfig,
    /// `[news]`.
    pub(crate) news: NewsConfig,
    /// `[alerts]`: the Alertmanager → DingTalk relay.
    pub(crate) alerts: AlertsConfig,
}

/// Why the configuration could not be loaded. Always exit code 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The config file does not exist or cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file or an override has an unknown key, a value of the wrong type or bad syntax.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value is out of range: every section's `validate`, naming the dotted key.
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
}

impl HubConfig {
    /// Loads the config from `path` (if any) and the given environment variables, then
    /// validates it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or field.
    pub(crate) fn load<I, K, V>(path: Option<&Path>, env: I) -> Result<HubConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut figment = Figment::from(Serialized::defaults(HubConfig::default()));
        if let Some(path) = path {
            // figment ignores a missing file; an operator who names one wants an error.
            std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        figment = figment
            .merge(EnvOverrides::short_names(&env))
            .merge(EnvOverrides::nested(&env))
            .merge(EnvOverrides::api_key(&env));
        for &(var, key, name) in &SECRET_ENVS[1..] {
            figment = figment.merge(EnvOverrides::secret(&env, var, key, name));
        }
        let cfg: HubConfig = figment.extract().map_err(|e| ConfigError::Parse(describe(e)))?;
        // Secrets: only their env var may hold them, never the file (which gets copied,
        // committed and printed) nor an `MT5_*` override.
        for &(var, key, name) in SECRET_ENVS {
            if cfg.secret(key).is_some_and(|s| !s.is_empty()) {
                if let Some(md) = figment.find_metadata(key) {
                    if md.name != name {
                        let source = md
                            .source
                            .as_ref()
                            .map_or_else(|| md.name.to_string(), |s| s.to_string());
                        return Err(ConfigError::Parse(format!(
                            "{key}: this secret is read only from the env {var}; remove it from {source}"
                        )));
                    }
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Validates every section.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.redis.validate()?;
        self.bus.validate()?;
        self.news.eodhd.validate()?;
        self.news.fetcher.validate()?;
        self.news.filter.validate()?;
        self.alerts.validate()?;
        self.http.gateway.validate()?;
        Ok(())
    }

    /// The secret at a dotted key of [`SECRET_ENVS`].
    fn secret(&self, key: &str) -> Option<&mt5_bus::Secret> {
        match key {
            EODHD_API_KEY => Some(&self.news.eodhd.api_key),
            DINGTALK_ACCESS_TOKEN => Some(&self.alerts.access_token),
            DINGTALK_SECRET => Some(&self.alerts.secret),
            GATEWAY_TOKEN => Some(&self.http.gateway.token),
            SENTINEL_PASSWORD => Some(&self.redis.sentinel_password),
            _ => None,
        }
    }

    /// The effective config as TOML, with the URL's password and every secret redacted.
    pub(crate) fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.redis.url = self.redis.redacted_url();
        // `Secret` serializes as "***"; nothing else holds a secret.
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render the config as TOML: {e}\n"))
    }

    /// Every stream the hub knows of: the groups' streams, the filtered news stream and the dead
    /// letter stream, without duplicates, in that order.
    pub(crate) fn known_streams(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let candidates = self.bus.groups.iter().map(|g| g.stream.clone()).chain([
            self.news.filter.output_stream.clone(),
            self.bus.deadletter_stream.clone(),
        ]);
        for s in candidates {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

/// Joins every figment error into one message naming the key (as the env var for env
/// overrides) and where it came from, never echoing the value of a secret key.
fn describe(err: figment::Error) -> String {
    let msgs: Vec<String> = err
        .into_iter()
        .map(|e| {
            let dotted = e.path.join(".");
            let from_env = e.metadata.as_ref().is_some_and(|m| m.name == ENV_SOURCE);
            let key = match (&e.metadata, from_env) {
                (Some(md), true) => md.interpolate(&Profile::Default, &e.path),
                _ => dotted.clone(),
            };
            let source = match &e.metadata {
                Some(md) => md
                    .source
                    .as_ref()
                    .map_or_else(|| md.name.to_string(), |s| s.to_string()),
                None => "the configuration".to_string(),
            };
            let what = if SECRET_KEYS.contains(&dotted.as_str()) {
                "invalid value (hidden: it may hold a secret)".to_string()
            } else {
                without_snippet(&e.kind.to_string())
            };
            if key.is_empty() {
                format!("{what} (in {source})")
            } else {
                format!("{key}: {what} (in {source})")
            }
        })
        .collect();
    msgs.join("; ")
}

/// A TOML parse error quotes the offending line, which may hold a secret: keep the position and
/// the explanation, drop the quoted source lines (`12 | ...`, `   |  ^`).
fn without_snippet(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l
                    .split_once(" |")
                    .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// One group of environment overrides as a figment provider. It is built from a list of
/// variables rather than the process environment so that tests can pass their own.
struct EnvOverrides {
    name: &'static str,
    /// Dotted key → (env var, raw value).
    entries: BTreeMap<String, (String, String)>,
}

impl fmt::Debug for EnvOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets.
        f.debug_struct("EnvOverrides")
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EnvOverrides {
    /// `MT5_REDIS_URL`, `MT5_REDIS_PASSWORD`, `MT5_HTTP_ADDR`.
    fn short_names(env: &[(String, String)]) -> Self {
        let entries = env
            .iter()
            .filter_map(|(k, v)| {
                let (_, key) = SHORT_NAMES.iter().find(|(name, _)| name == k)?;
                Some((key.to_string(), (k.clone(), v.clone())))
            })
            .collect();
        EnvOverrides {
            name: ENV_SOURCE,
            entries,
        }
    }

    /// `MT5_<SECTION>__<KEY>`: only variables whose name (after the prefix) contains `__`, so
    /// `MT5_LOG`, `MT5_CONFIG` and the short names are left alone.
    fn nested(env: &[(String, String)]) -> Self {
        let entries = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                if !rest.contains(ENV_SEPARATOR) {
                    return None;
                }
                let key = rest
                    .split(ENV_SEPARATOR)
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join(".");
                Some((key, (k.clone(), v.clone())))
            })
            .collect();
        EnvOverrides {
            name: ENV_SOURCE,
            entries,
        }
    }

    /// `EODHD_API_KEY` → `news.eodhd.api_key`.
    fn api_key(env: &[(String, String)]) -> Self {
        let (var, key, name) = SECRET_ENVS[0];
        Self::secret(env, var, key, name)
    }

    /// The env var `var` → the secret at `key`, as the provider `name`.
    fn secret(env: &[(String, String)], var: &str, key: &str, name: &'static str) -> Self {
        let entries = env
            .iter()
            .filter(|(k, _)| k == var)
            .map(|(k, v)| (key.to_string(), (k.clone(), v.clone())))
            .collect();
        EnvOverrides { name, entries }
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name).interpolater(|_: &Profile, keys: &[&str]| {
            format!(
                "{ENV_PREFIX}{}",
                keys.iter()
                    .map(|k| k.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(ENV_SEPARATOR)
            )
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let schema = serde_json::to_value(HubConfig::default()).unwrap_or_default();
        let mut dict = Dict::new();
        for (key, (var, raw)) in &self.entries {
            if key.split('.').any(str::is_empty) {
                return Err(figment::Error::from(format!(
                    "{var}: empty key segment in the variable name"
                )));
            }
            insert(&mut dict, key, typed_value(&schema, key, raw));
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Inserts `value` at the dotted `key`, creating (or replacing non-table values with) tables on
/// the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = dict.entry(head.to_string()).or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// Env values are text; the default config tells what type each key holds, so `"500"` becomes a
/// number only where a number is expected and a numeric password stays a string. A value that
/// does not parse as the expected type stays text, and deserialization then names the key.
fn typed_value(schema: &serde_json::Value, key: &str, raw: &str) -> Value {
    let expected = key.split('.').try_fold(schema, |v, k| v.get(k));
    let trimmed = raw.trim();
    match expected {
        Some(serde_json::Value::Bool(_)) => match trimmed {
            "true" | "TRUE" | "1" => Value::from(true),
            "false" | "FALSE" | "0" => Value::from(false),
            _ => Value::from(raw.to_string()),
        },
        Some(serde_json::Value::Number(n)) if n.is_f64() => trimmed
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw.to_string())),
        Some(serde_json::Value::Number(_)) => trimmed
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| trimmed.parse::<i64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(raw.to_string())),
        Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
            // `[a, b]` or `[{stream = "s", group = "g"}]`: figment's own value syntax.
            trimmed.parse::<Value>().unwrap_or_else(|never| match never {})
        }
        _ => Value::from(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_env(vars: &[(&str, &str)]) -> Result<HubConfig, ConfigError> {
        HubConfig::load(None, vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn load_toml(toml: &str, vars: &[(&str, &str)]) -> Result<HubConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, toml).unwrap();
        HubConfig::load(Some(&path), vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn sample_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/mt5-hub.toml")
    }

    /// With no file and no variables the config is the defaults.
    #[test]
    fn no_file_and_no_env_gives_the_defaults() {
        assert_eq!(load_env(&[]).unwrap(), HubConfig::default());
    }

    /// `MT5_<SECTION>__<KEY>` overrides nested keys, with numbers, floats, enums and lists typed.
    #[test]
    fn nested_env_overrides_any_key() {
        let cfg = load_env(&[
            ("MT5_BUS__CONSUMER__BLOCK_MS", "500"),
            ("MT5_BUS__RETRY__JITTER", "0.3"),
            ("MT5_BUS__RECLAIM__ENABLED", "false"),
            ("MT5_BUS__TRIM__MODE", "maxlen"),
            ("MT5_BUS__TRIM__MAXLEN_STREAMS", "[a, b]"),
            ("MT5_BUS__DEADLETTER_STREAM", "123"),
            ("MT5_BUS__GROUPS", r#"[{stream = "s1", group = "g1"}]"#),
            ("MT5_REDIS__CONNECT_TIMEOUT_MS", "750"),
        ])
        .unwrap();
        assert_eq!(cfg.bus.consumer.block_ms, 500);
        assert_eq!(cfg.bus.retry.jitter, 0.3);
        assert!(!cfg.bus.reclaim.enabled);
        assert_eq!(cfg.bus.trim.mode, mt5_bus::TrimMode::Maxlen);
        assert_eq!(cfg.bus.trim.maxlen_streams, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            cfg.bus.deadletter_stream, "123",
            "a numeric-looking string stays a string"
        );
        assert_eq!(cfg.bus.groups.len(), 1);
        assert_eq!(cfg.bus.groups[0].stream, "s1");
        assert_eq!(cfg.redis.connect_timeout_ms, 750);
    }

    /// The short names map to their keys; `MT5_LOG`, `MT5_CONFIG` and unrelated `MT5_*` are ignored.
    #[test]
    fn short_names_map_to_their_keys_and_other_mt5_vars_are_ignored() {
        let cfg = load_env(&[
            ("MT5_REDIS_URL", "redis://db:6380/2"),
            ("MT5_REDIS_PASSWORD", "12345"),
            ("MT5_HTTP_ADDR", "0.0.0.0:9000"),
            ("MT5_LOG", "debug"),
            ("MT5_LOG_FORMAT", "json"),
            ("MT5_CONFIG", "/nonexistent.toml"),
            ("MT5_EODHD_BASE_URL", "http://x"),
            ("MT5_TEST_REDIS", "process"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(cfg.redis.url, "redis://db:6380/2");
        assert_eq!(cfg.redis.password.as_ref().map(|p| p.expose()), Some("12345"));
        assert_eq!(cfg.http.addr, "0.0.0.0:9000".parse().unwrap());
    }

    /// The nested form is more specific than the short name, and env beats the file.
    #[test]
    fn nested_env_beats_short_names_which_beat_the_file() {
        let cfg = load_toml(
            "[redis]\nurl = \"redis://file:1\"\n[bus.consumer]\ncount = 7\n",
            &[
                ("MT5_REDIS_URL", "redis://short:2"),
                ("MT5_REDIS__URL", "redis://nested:3"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.redis.url, "redis://nested:3");
        assert_eq!(cfg.bus.consumer.count, 7);
        let cfg = load_toml(
            "[redis]\nurl = \"redis://file:1\"\n",
            &[("MT5_REDIS_URL", "redis://short:2")],
        )
        .unwrap();
        assert_eq!(cfg.redis.url, "redis://short:2");
    }

    /// Unknown keys in the file are errors naming the key.
    #[test]
    fn unknown_key_in_the_file_is_rejected_by_name() {
        let err = load_toml("[bus.consumer]\nblok_ms = 5\n", &[]).unwrap_err().to_string();
        assert!(err.contains("blok_ms"), "{err}");
        let err = load_toml("[nope]\nx = 1\n", &[]).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        let err = load_toml("[http]\nport = 1\n", &[]).unwrap_err().to_string();
        assert!(err.contains("port"), "{err}");
    }

    /// Unknown keys in `MT5_X__Y` variables are errors naming the variable.
    #[test]
    fn unknown_key_in_env_is_rejected_by_name() {
        let err = load_env(&[("MT5_BUS__CONSUMER__BLOK_MS", "5")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("blok_ms"), "{err}");
        assert!(err.contains("MT5_BUS__CONSUMER__BLOK_MS"), "{err}");
        let err = load_env(&[("MT5_NEWS__X", "1")]).unwrap_err().to_string();
        assert!(err.contains("MT5_NEWS__X"), "{err}");
        let err = load_env(&[("MT5_NEWS__EODHD__NOPE", "1")]).unwrap_err().to_string();
        assert!(err.contains("MT5_NEWS__EODHD__NOPE"), "{err}");
    }

    /// A value of the wrong type names its key.
    #[test]
    fn wrong_type_names_the_key() {
        let err = load_env(&[("MT5_BUS__CONSUMER__BLOCK_MS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MT5_BUS__CONSUMER__BLOCK_MS"), "{err}");
    }

    /// Out-of-range values are rejected by the bus's validation, naming the field.
    #[test]
    fn invalid_values_name_the_field() {
        let err = load_env(&[("MT5_BUS__CONSUMER__BLOCK_MS", "0")]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("bus.consumer.block_ms"), "{err}");
        let err = load_env(&[("MT5_REDIS_URL", "redis-cluster://h:7000")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis.url") && err.contains("not supported"), "{err}");
    }

    /// A named config file that does not exist is an error, not silently the defaults.
    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = HubConfig::load(Some(Path::new("/nonexistent/mt5.toml")), Vec::<(String, String)>::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/mt5.toml"), "{err}");
    }

    /// The printed config never shows the password, from the URL or from `redis.password`.
    #[test]
    fn secrets_are_redacted_in_the_printed_config() {
        let cfg = load_env(&[
            ("MT5_REDIS_URL", "redis://alice:s3cr3t-url@db:6379/0"),
            ("MT5_REDIS_PASSWORD", "s3cr3t-pw"),
        ])
        .unwrap();
        let printed = cfg.to_redacted_toml();
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("redis://alice:***@db:6379/0"), "{printed}");
        assert!(printed.contains("password = \"***\""), "{printed}");
        assert!(!format!("{cfg:?}").contains("s3cr3t-pw"));
        // The printed config is itself a valid config file.
        let back: HubConfig = toml::from_str(&printed).unwrap();
        assert_eq!(back.bus, cfg.bus);
    }

    /// A bad value for a secret key is reported without echoing it.
    #[test]
    fn errors_on_secret_keys_do_not_echo_the_value() {
        let err = load_toml("[redis]\npassword = 987654321\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis.password") && !err.contains("987654321"), "{err}");
    }

    /// A syntax error gives the position but never quotes the line (which may hold a password).
    #[test]
    fn syntax_errors_do_not_quote_the_line() {
        let err = load_toml("[redis]\nurl = \"redis://u:hunter2@h:1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    /// `configs/mt5-hub.toml` parses and holds exactly the defaults.
    #[test]
    fn the_sample_config_parses_and_equals_the_defaults() {
        let cfg = HubConfig::load(Some(&sample_path()), Vec::<(String, String)>::new()).unwrap();
        assert_eq!(cfg, HubConfig::default());
    }

    /// The sample config sets every key explicitly (so it documents them all), with a comment.
    #[test]
    fn the_sample_config_names_every_key() {
        let text = std::fs::read_to_string(sample_path()).unwrap();
        let sample: toml::Value = toml::from_str(&text).unwrap();
        let defaults = toml::Value::try_from(HubConfig::default()).unwrap();
        let mut missing = Vec::new();
        missing_keys(&defaults, &sample, "", &mut missing);
        // `redis.password` has no default (None is not serialized) and the EODHD key is read only
        // from the env: neither is set, but both must be documented.
        assert!(text.contains("password"), "redis.password must be documented");
        assert!(
            text.contains("api_key") && text.contains("EODHD_API_KEY"),
            "news.eodhd.api_key must be documented"
        );
        for (var, key) in [
            (DINGTALK_ACCESS_TOKEN_ENV, "access_token"),
            (DINGTALK_SECRET_ENV, "secret ="),
            (GATEWAY_TOKEN_ENV, "token ="),
            (SENTINEL_PASSWORD_ENV, "sentinel_password ="),
        ] {
            assert!(text.contains(var) && text.contains(key), "{key} must be documented");
        }
        missing.retain(|k| {
            ![
                EODHD_API_KEY,
                DINGTALK_ACCESS_TOKEN,
                DINGTALK_SECRET,
                GATEWAY_TOKEN,
                SENTINEL_PASSWORD,
            ]
            .contains(&k.as_str())
        });
        assert!(
            missing.is_empty(),
            "keys missing from configs/mt5-hub.toml: {missing:?}"
        );
    }

    fn missing_keys(defaults: &toml::Value, sample: &toml::Value, at: &str, out: &mut Vec<String>) {
        if let (toml::Value::Table(d), Some(s)) = (defaults, sample.as_table()) {
            for (k, v) in d {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match s.get(k) {
                    None => out.push(path),
                    Some(sv) => missing_keys(v, sv, &path, out),
                }
            }
        }
    }

    /// `MT5_<A>__<B>__<C>` reaches three levels deep, into every news section.
    #[test]
    fn nested_env_overrides_reach_the_news_sections() {
        let cfg = load_env(&[
            ("MT5_NEWS__EODHD__BASE_URL", "http://127.0.0.1:8080"),
            ("MT5_NEWS__EODHD__RETRY__MAX_ATTEMPTS", "2"),
            ("MT5_NEWS__FETCHER__WATCHLIST", "[\"AAPL.US\", \"SAP.XETRA\"]"),
            ("MT5_NEWS__FETCHER__INTERVAL_SECS", "300"),
            ("MT5_NEWS__FILTER__MIN_SENTIMENT", "0.25"),
            ("MT5_NEWS__FILTER__SENTIMENT_MODE", "positive"),
            ("MT5_NEWS__FILTER__KEYWORDS", "[]"),
        ])
        .unwrap();
        assert_eq!(cfg.news.eodhd.base_url, "http://127.0.0.1:8080");
        assert_eq!(cfg.news.eodhd.retry.max_attempts, 2);
        assert_eq!(
            cfg.news.fetcher.watchlist,
            vec!["AAPL.US".to_string(), "SAP.XETRA".to_string()]
        );
        assert_eq!(cfg.news.fetcher.interval_secs, 300);
        assert_eq!(cfg.news.filter.min_sentiment, 0.25);
        assert_eq!(
            cfg.news.filter.sentiment_mode,
            mt5_news::filter::SentimentMode::Positive
        );
        assert!(cfg.news.filter.keywords.is_empty());
    }

    /// `MT5_EODHD_BASE_URL` is the short name of `news.eodhd.base_url`; the nested form wins.
    #[test]
    fn the_eodhd_base_url_has_a_short_name() {
        let cfg = load_env(&[("MT5_EODHD_BASE_URL", "http://mock:1")]).unwrap();
        assert_eq!(cfg.news.eodhd.base_url, "http://mock:1");
        let cfg = load_env(&[
            ("MT5_EODHD_BASE_URL", "http://short:1"),
            ("MT5_NEWS__EODHD__BASE_URL", "http://nested:2"),
        ])
        .unwrap();
        assert_eq!(cfg.news.eodhd.base_url, "http://nested:2");
    }

    /// The API key comes from `EODHD_API_KEY` and is redacted everywhere it could be shown.
    #[test]
    fn the_eodhd_key_comes_from_its_env_and_is_redacted() {
        let cfg = load_env(&[("EODHD_API_KEY", "k3y-s3cr3t")]).unwrap();
        assert_eq!(cfg.news.eodhd.api_key.expose(), "k3y-s3cr3t");
        let printed = cfg.to_redacted_toml();
        assert!(!printed.contains("k3y-s3cr3t"), "{printed}");
        assert!(printed.contains("api_key = \"***\""), "{printed}");
        assert!(!format!("{cfg:?}").contains("k3y-s3cr3t"));
    }

    /// The key in the file or in `MT5_NEWS__EODHD__API_KEY` is an error that names
    /// `EODHD_API_KEY` and does not echo the key.
    #[test]
    fn the_eodhd_key_is_refused_outside_its_env() {
        let err = load_toml("[news.eodhd]\napi_key = \"f1le-key\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EODHD_API_KEY") && !err.contains("f1le-key"), "{err}");
        let err = load_env(&[("MT5_NEWS__EODHD__API_KEY", "env-k3y")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EODHD_API_KEY") && !err.contains("env-k3y"), "{err}");
        // A wrongly typed key is reported without its value too.
        let err = load_toml("[news.eodhd]\napi_key = 123456789\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("news.eodhd.api_key") && !err.contains("123456789"),
            "{err}"
        );
    }

    /// Out-of-range news settings are rejected naming the field.
    #[test]
    fn invalid_news_values_name_the_field() {
        for (var, value, field) in [
            ("MT5_NEWS__EODHD__BASE_URL", "ftp://x", "news.eodhd.base_url"),
            ("MT5_NEWS__EODHD__PAGE_LIMIT", "0", "news.eodhd.page_limit"),
            ("MT5_NEWS__FETCHER__INTERVAL_SECS", "10", "news.fetcher.interval_secs"),
            ("MT5_NEWS__FILTER__MIN_SENTIMENT", "2.0", "news.filter.min_sentiment"),
        ] {
            let err = load_env(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(field), "{var}={value}: {err}");
        }
        let err = load_toml("[news.fetcher]\nwatchlst = []\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("watchlst"), "{err}");
    }

    /// The DingTalk token and secret come from their env vars only, are redacted, and are
    /// refused (without being echoed) in the file or an `MT5_*` override.
    #[test]
    fn sentinel_mode_loads_with_its_password_only_from_the_env() {
        let toml = "[redis]\nmode = \"sentinel\"\nsentinel_master = \"m1\"\nsentinels = [\"10.0.0.1:26379\", \"10.0.0.2:26379\"]\n";
        let cfg = load_toml(toml, &[(SENTINEL_PASSWORD_ENV, "s3nt-s3cr3t")]).unwrap();
        assert_eq!(cfg.redis.mode, mt5_bus::RedisMode::Sentinel);
        assert_eq!(cfg.redis.sentinel_master, "m1");
        assert_eq!(cfg.redis.sentinels, ["10.0.0.1:26379", "10.0.0.2:26379"]);
        assert_eq!(cfg.redis.sentinel_password.expose(), "s3nt-s3cr3t");
        let printed = cfg.to_redacted_toml();
        assert!(
            printed.contains("mode = \"sentinel\"") && !printed.contains("s3nt-s3cr3t"),
            "{printed}"
        );

        let err = load_toml("[redis]\nsentinel_password = \"f1le-pw\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(SENTINEL_PASSWORD_ENV) && !err.contains("f1le-pw"), "{err}");
        let err = load_toml("[redis]\nmode = \"sentinel\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis.sentinels"), "{err}");
    }

    #[test]
    fn the_dingtalk_secrets_come_only_from_their_env_and_are_redacted() {
        let cfg = load_env(&[
            ("DINGTALK_ACCESS_TOKEN", "t0ken-s3cr3t"),
            ("DINGTALK_SECRET", "SECs1gn-s3cr3t"),
            ("MT5_DINGTALK_URL", "http://127.0.0.1:1/robot/send"),
        ])
        .unwrap();
        assert_eq!(cfg.alerts.access_token.expose(), "t0ken-s3cr3t");
        assert_eq!(cfg.alerts.secret.expose(), "SECs1gn-s3cr3t");
        assert_eq!(cfg.alerts.dingtalk_url, "http://127.0.0.1:1/robot/send");
        let printed = cfg.to_redacted_toml();
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(!format!("{cfg:?}").contains("s3cr3t"));

        let err = load_toml("[alerts]\naccess_token = \"f1le-t0ken\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DINGTALK_ACCESS_TOKEN") && !err.contains("f1le-t0ken"),
            "{err}"
        );
        let err = load_env(&[("MT5_ALERTS__SECRET", "SECenv")]).unwrap_err().to_string();
        assert!(err.contains("DINGTALK_SECRET") && !err.contains("SECenv"), "{err}");
        let err = load_toml("[alerts]\nsecret = 424242424\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("alerts.secret") && !err.contains("424242424"), "{err}");
    }

    /// Mentions per severity load from the file; bad `[alerts]` values name the field.
    #[test]
    fn alerts_mentions_load_and_bad_values_name_the_field() {
        let cfg = load_toml(
            "[alerts.mentions.critical]\nmobiles = [\"13800000000\"]\nat_all = true\n\
             [alerts.mentions.page]\nuser_ids = [\"u1\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.alerts.mentions["critical"].mobiles, vec!["13800000000".to_string()]);
        assert!(cfg.alerts.mentions["critical"].at_all);
        assert_eq!(cfg.alerts.mentions["page"].user_ids, vec!["u1".to_string()]);
        assert!(cfg.alerts.mentions.contains_key("warning"), "defaults stay");
        for (var, value, field) in [
            ("MT5_ALERTS__RATE_LIMIT_PER_MINUTE", "0", "alerts.rate_limit_per_minute"),
            ("MT5_ALERTS__MAX_ATTEMPTS", "0", "alerts.max_attempts"),
            ("MT5_DINGTALK_URL", "ftp://x", "alerts.dingtalk_url"),
            (
                "MT5_DINGTALK_URL",
                "http://x/send?access_token=abc",
                "alerts.dingtalk_url",
            ),
            ("MT5_ALERTS__MAX_MESSAGE_BYTES", "50000", "alerts.max_message_bytes"),
        ] {
            let err = load_env(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(field), "{var}={value}: {err}");
        }
        let err = load_toml("[alerts.mentions.critical]\nphones = []\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("phones"), "{err}");
    }

    /// The known streams are the groups' streams, the filtered news and the dead letter stream.
    #[test]
    fn known_streams_follow_the_config() {
        let cfg = HubConfig::default();
        assert_eq!(
            cfg.known_streams(),
            vec![
                "mt5:events:news_raw",
                "mt5:events:news_filtered",
                "mt5:events:deadletter"
            ]
        );
    }
}
