//! `deadletter list | show | replay | purge`, on the configured dead letter stream.

use mt5_bus::dead_letter::{self, DeadLetter, ListOptions, Replayed};
use mt5_bus::DeadLetterReason;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::DeadletterCommand;
use crate::commands::streams::check_id;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::{human_ms, or_dash, print, print_json, println, Table};
use crate::redis_conn::OneShot;

/// Longest error text shown in the list table.
const ERROR_WIDTH: usize = 60;

/// Runs one `deadletter` command.
///
/// # Errors
/// Usage errors (bad id or reason, purge without `--yes`), Redis unreachable after bounded
/// retries, or a failed replay.
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken, cmd: DeadletterCommand) -> Result<(), HubError> {
    let dlq = cfg.bus.deadletter_stream.clone();
    match cmd {
        DeadletterCommand::List {
            reason,
            stream,
            limit,
            json,
        } => {
            let opts = list_options(reason, stream, limit)?;
            let redis = OneShot::connect(cfg, cancel).await?;
            let items = list(&redis, &dlq, &opts).await?;
            if json {
                print_json(&items)?;
            } else if items.is_empty() {
                println(&format!("no dead letters in {dlq}"))?;
            } else {
                print(&render_list(&items))?;
            }
            Ok(())
        }
        DeadletterCommand::Show { id, json } => {
            check_id(&id)?;
            let redis = OneShot::connect(cfg, cancel).await?;
            let d = redis
                .run("reading a dead letter", |mut conn| {
                    let (dlq, id) = (dlq.clone(), id.clone());
                    async move { dead_letter::show(&mut conn, &dlq, &id).await }
                })
                .await?;
            if json {
                print_json(&d)?;
            } else {
                print(&render_one(&d))?;
            }
            Ok(())
        }
        DeadletterCommand::Replay {
            ids,
            reason,
            all,
            stream,
            json,
        } => {
            for id in &ids {
                check_id(id)?;
            }
            let redis = OneShot::connect(cfg, cancel).await?;
            let ids = if ids.is_empty() {
                let _ = all; // `--all` is the absence of a filter.
                let opts = list_options(reason, stream, None)?;
                list(&redis, &dlq, &opts)
                    .await?
                    .into_iter()
                    .map(|d| d.entry_id)
                    .collect()
            } else {
                ids
            };
            replay(&redis, &dlq, &ids, json).await
        }
        DeadletterCommand::Purge { ids, all, dry_run, yes } => {
            for id in &ids {
                check_id(id)?;
            }
            if !yes && !dry_run {
                return Err(HubError::Usage(
                    "refusing to purge dead letters without --yes: pass --yes to delete them for good, or --dry-run to see what would be deleted"
                        .into(),
                ));
            }
            let redis = OneShot::connect(cfg, cancel).await?;
            purge(&redis, &dlq, ids, all, dry_run).await
        }
    }
}

fn list_options(reason: Option<String>, stream: Option<String>, limit: Option<usize>) -> Result<ListOptions, HubError> {
    let mut opts = ListOptions::default();
    if let Some(r) = reason {
        if DeadLetterReason::parse(&r).is_none() {
            return Err(HubError::Usage(format!(
                "unknown reason {r:?}: expected malformed, unsupported, max_deliveries or handler"
            )));
        }
        opts = opts.with_reason(r);
    }
    if let Some(s) = stream {
        opts = opts.with_stream(s);
    }
    if let Some(l) = limit {
        opts = opts.with_limit(l);
    }
    Ok(opts)
}

async fn list(redis: &OneShot, dlq: &str, opts: &ListOptions) -> Result<Vec<DeadLetter>, HubError> {
    redis
        .run("listing dead letters", |mut conn| {
            let (dlq, opts) = (dlq.to_string(), opts.clone());
            async move { dead_letter::list(&mut conn, &dlq, &opts).await }
        })
        .await
}

/// The list table: one row per dead letter.
fn render_list(items: &[DeadLetter]) -> String {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut t = Table::new(
        0,
        &[
            "ID",
            "AGE",
            "REASON",
            "STREAM",
            "ORIGINAL ID",
            "DELIVERIES",
            "TYPE",
            "EVENT ID",
            "ERROR",
        ],
    );
    for d in items {
        let age = mt5_bus::envelope::entry_millis(&d.entry_id).map(|ms| human_ms(now_ms.saturating_sub(ms)));
        t.row(vec![
            d.entry_id.clone(),
            or_dash(age),
            or_dash(d.reason.as_ref()),
            or_dash(d.stream.as_ref()),
            or_dash(d.original_entry_id.as_ref()),
            or_dash(d.deliveries),
            // The raw field, escaped: an original `type` or `id` need not be UTF-8.
            or_dash(d.field("type")),
            or_dash(d.field("id")),
            or_dash(d.error.as_deref().map(|e| one_line(e, ERROR_WIDTH))),
        ]);
    }
    let mut out = t.render();
    out.push_str(&format!("{} dead letter(s)\n", items.len()));
    out
}

/// One dead letter with every field.
fn render_one(d: &DeadLetter) -> String {
    let mut t = Table::new(0, &["FIELD", "VALUE"]);
    t.row(vec!["(entry id)".into(), d.entry_id.clone()]);
    for (k, v) in &d.fields {
        // One line per field, nothing lost: line breaks, control characters and bytes that are
        // not UTF-8 are shown escaped (`\n`, `\xff`; a backslash as `\\`). `--json` has the text
        // raw and non-UTF-8 bytes as `{"base64": ...}`.
        t.row(vec![k.to_string(), v.to_string()]);
    }
    t.render()
}

/// Text on one line, cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max.saturating_sub(1)).collect::<String>())
    } else {
        flat
    }
}

/// What replay did with one id: the bus's outcome, or the error that stopped it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ReplayLine {
    /// `{"status":"replayed",...}` or `{"status":"not_found",...}`.
    Done(Replayed),
    /// `{"status":"failed",...}`.
    Failed {
        deadletter_id: String,
        status: Failed,
        error: String,
    },
}

/// The `failed` status of a [`ReplayLine::Failed`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Failed {
    Failed,
}

impl ReplayLine {
    fn text(&self) -> String {
        match self {
            ReplayLine::Done(Replayed::Replayed {
                deadletter_id,
                stream,
                new_entry_id,
            }) => format!("{deadletter_id} -> {stream} {new_entry_id}"),
            ReplayLine::Done(Replayed::NotFound { deadletter_id }) => {
                format!("{deadletter_id}: not found (already replayed or purged)")
            }
            ReplayLine::Failed {
                deadletter_id, error, ..
            } => format!("{deadletter_id}: failed: {error}"),
        }
    }
}

/// Replays `ids` one at a time (each replay is atomic and safe to retry: a retry after a lost
/// reply finds the dead letter gone and reports `not_found`).
async fn replay(redis: &OneShot, dlq: &str, ids: &[String], json: bool) -> Result<(), HubError> {
    let mut lines = Vec::with_capacity(ids.len());
    let (mut replayed, mut not_found, mut failed) = (0usize, 0usize, 0usize);
    for id in ids {
        let r = redis
            .run("replaying a dead letter", |mut conn| {
                let (dlq, ids) = (dlq.to_string(), vec![id.clone()]);
                async move { dead_letter::replay(&mut conn, &dlq, &ids).await }
            })
            .await;
        let line = match r {
            Ok(mut v) => ReplayLine::Done(v.pop().unwrap_or(Replayed::NotFound {
                deadletter_id: id.clone(),
            })),
            Err(e @ HubError::Unreachable { .. }) => return Err(e),
            Err(e) => ReplayLine::Failed {
                deadletter_id: id.clone(),
                status: Failed::Failed,
                error: e.to_string(),
            },
        };
        match &line {
            ReplayLine::Done(Replayed::Replayed { .. }) => replayed += 1,
            ReplayLine::Failed { .. } => failed += 1,
            ReplayLine::Done(_) => not_found += 1,
        }
        if !json {
            println(&line.text())?;
        }
        lines.push(line);
    }
    if json {
        print_json(&lines)?;
    } else {
        println(&format!("replayed {replayed} of {} dead letter(s)", lines.len()))?;
    }
    let mut problems = Vec::new();
    if failed > 0 {
        problems.push(format!("{failed} replay(s) failed"));
    }
    if not_found > 0 {
        problems.push(format!("{not_found} id(s) not found (already replayed or purged)"));
    }
    if !problems.is_empty() {
        return Err(HubError::Failed(problems.join(", ")));
    }
    Ok(())
}

async fn purge(redis: &OneShot, dlq: &str, ids: Vec<String>, all: bool, dry_run: bool) -> Result<(), HubError> {
    if dry_run {
        let existing: Vec<String> = if all {
            list(redis, dlq, &ListOptions::default())
                .await?
                .into_iter()
                .map(|d| d.entry_id)
                .collect()
        } else {
            let mut found = Vec::new();
            for id in &ids {
                let r = redis
                    .run("reading a dead letter", |mut conn| {
                        let (dlq, id) = (dlq.to_string(), id.clone());
                        async move {
                            match dead_letter::show(&mut conn, &dlq, &id).await {
                                Ok(_) => Ok(true),
                                Err(mt5_bus::Error::DeadLetterNotFound(_)) => Ok(false),
                                Err(e) => Err(e),
                            }
                        }
                    })
                    .await?;
                if r {
                    found.push(id.clone());
                }
            }
            found
        };
        for id in &existing {
            println(&format!("would delete {id}"))?;
        }
        println(&format!(
            "dry run: would delete {} dead letter(s) from {dlq}",
            existing.len()
        ))?;
        return Ok(());
    }
    let n = if all {
        redis
            .run("purging dead letters", |mut conn| {
                let dlq = dlq.to_string();
                async move { dead_letter::purge_all(&mut conn, &dlq).await }
            })
            .await?
    } else {
        redis
            .run("purging dead letters", |mut conn| {
                let (dlq, ids) = (dlq.to_string(), ids.clone());
                async move { dead_letter::purge(&mut conn, &dlq, &ids).await }
            })
            .await?
    };
    if all {
        println(&format!("purged {n} dead letter(s) from {dlq}"))?;
    } else {
        println(&format!("purged {n} of {} dead letter(s) from {dlq}", ids.len()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long or multi-line errors are cut to one short line.
    #[test]
    fn errors_are_cut_to_one_line() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdefghij", 5), "abcd…");
    }

    /// An unknown reason is a usage error, not an empty list.
    #[test]
    fn unknown_reasons_are_usage_errors() {
        assert!(matches!(
            list_options(Some("oops".into()), None, None),
            Err(HubError::Usage(_))
        ));
        assert!(list_options(Some("max_deliveries".into()), Some("s".into()), Some(3)).is_ok());
    }

    /// `deadletter replay --json` writes one object per id with its `status`.
    #[test]
    fn replay_lines_carry_their_status() {
        let lines = [
            ReplayLine::Done(Replayed::Replayed {
                deadletter_id: "1-0".into(),
                stream: "s".into(),
                new_entry_id: "9-0".into(),
            }),
            ReplayLine::Done(Replayed::NotFound {
                deadletter_id: "2-0".into(),
            }),
            ReplayLine::Failed {
                deadletter_id: "3-0".into(),
                status: Failed::Failed,
                error: "boom".into(),
            },
        ];
        let v = serde_json::to_value(&lines).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"status": "replayed", "deadletter_id": "1-0", "stream": "s", "new_entry_id": "9-0"},
                {"status": "not_found", "deadletter_id": "2-0"},
                {"status": "failed", "deadletter_id": "3-0", "error": "boom"},
            ])
        );
        assert_eq!(lines[0].text(), "1-0 -> s 9-0");
        assert!(lines[1].text().contains("not found"));
        assert_eq!(lines[2].text(), "3-0: failed: boom");
    }
}
