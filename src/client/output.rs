//! How the client shows answers to people: aligned tables and `key  value`
//! lines. Machines get the JSON as the service sent it (`--json`).

use serde_json::Value;

/// Left-aligned columns, two spaces apart, under a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `key  value` lines, keys aligned; absent values are left out.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| vec![format!("{key}:"), value.clone()])
        .collect();
    let width = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
    rows.iter()
        .map(|r| format!("{:<width$}  {}\n", r[0], r[1]))
        .collect()
}

/// A field as text: strings bare, `null` and absent as `-`, the rest as compact JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Policies as a table.
pub fn policies(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            [
                "id",
                "name",
                "resource_type",
                "state",
                "next_run_at",
                "last_success_at",
                "stale_resources",
            ]
            .iter()
            .map(|key| text(&p[*key]))
            .collect()
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "TYPE",
            "STATE",
            "NEXT RUN",
            "LAST SUCCESS",
            "STALE",
        ],
        &rows,
    )
}

/// One policy, field by field.
pub fn policy(p: &Value) -> String {
    let schedules = p["schedules"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|s| format!("{} ({})", text(&s["cron"]), text(&s["timezone"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let error = match &p["error"] {
        Value::Null => String::new(),
        e => format!("{}: {}", text(&e["code"]), text(&e["message"])),
    };
    fields(&[
        ("id", text(&p["id"])),
        ("name", text(&p["name"])),
        ("project", text(&p["project_id"])),
        ("type", text(&p["resource_type"])),
        ("state", text(&p["state"])),
        ("error", error),
        ("enabled", text(&p["enabled"])),
        ("targets", text(&p["targets"])),
        ("schedules", schedules),
        ("retention", text(&p["retention"])),
        ("next run", text(&p["next_run_at"])),
        ("version", text(&p["version"])),
    ])
}

/// One job, field by field.
pub fn job(j: &Value) -> String {
    let resource = format!("{} {}", text(&j["resource_type"]), text(&j["resource_id"]));
    let error = match &j["error"] {
        Value::Null => String::new(),
        e => format!("{}: {}", text(&e["code"]), text(&e["message"])),
    };
    let pieces = j["volume_snapshots"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|s| text(&s["snapshot_id"]))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let reused = if j["reused"] == Value::Bool(true) {
        "yes".to_owned()
    } else {
        String::new()
    };
    fields(&[
        ("id", text(&j["id"])),
        ("status", text(&j["status"])),
        ("reused", reused),
        ("resource", resource),
        ("image", opt(&j["image_id"])),
        ("volume snapshots", pieces),
        ("error", error),
        ("created", text(&j["created_at"])),
        ("finished", opt(&j["finished_at"])),
    ])
}

/// A run, in one line.
pub fn run(r: &Value) -> String {
    format!(
        "run {} of policy {}: {}\n",
        text(&r["id"]),
        text(&r["policy_id"]),
        text(&r["status"])
    )
}

/// `GET /v1/status`, field by field.
pub fn status(s: &Value) -> String {
    let p = &s["policies"];
    fields(&[
        (
            "policies",
            format!(
                "{} active, {} disabled, {} broken, {} stale",
                text(&p["active"]),
                text(&p["disabled"]),
                text(&p["broken"]),
                text(&p["stale"])
            ),
        ),
        ("jobs failed (24h)", text(&s["jobs_failed_24h"])),
        ("restores failed", text(&s["restores_failed_24h"])),
        ("runs missed (24h)", text(&s["runs_missed_24h"])),
        ("deletions failed", text(&s["deletions_failed"])),
        ("deletions blocked", text(&s["deletions_blocked"])),
    ])
}

/// A value that may be absent: empty (the line is left out) when it is.
fn opt(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        other => text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_and_show_absent_values_as_a_dash() {
        let out = policies(&[
            json!({"id": "p1", "name": "nightly", "resource_type": "server", "state": "active",
                   "next_run_at": "2026-12-02T02:00:00Z"}),
            json!({"id": "p22", "name": "db", "resource_type": "volume", "state": "broken",
                   "next_run_at": null, "last_success_at": null, "stale_resources": 3}),
        ]);
        assert_eq!(
            out,
            "ID   NAME     TYPE    STATE   NEXT RUN              LAST SUCCESS  STALE\n\
             p1   nightly  server  active  2026-12-02T02:00:00Z  -             -\n\
             p22  db       volume  broken  -                     -             3\n"
        );
    }

    #[test]
    fn status_reads_the_documented_shape() {
        let out = status(&json!({
            "policies": {"active": 3, "disabled": 1, "broken": 0, "stale": 2},
            "jobs_failed_24h": 4, "restores_failed_24h": 2, "deletions_failed": 0, "deletions_blocked": 1,
            "runs_missed_24h": 0
        }));
        assert!(
            out.starts_with("policies:           3 active, 1 disabled, 0 broken, 2 stale\n"),
            "{out}"
        );
        assert!(out.contains("jobs failed (24h):  4\n"), "{out}");
        assert!(out.contains("restores failed:    2\n"), "{out}");
        assert!(out.contains("deletions blocked:  1\n"), "{out}");
    }

    #[test]
    fn a_job_shows_its_error_and_leaves_out_what_it_lacks() {
        let out = job(
            &json!({"id": "j1", "status": "failed", "resource_type": "server",
            "resource_id": "s1", "image_id": null, "volume_snapshots": [],
            "error": {"code": "image_failed", "message": "killed"}, "created_at": "t0", "finished_at": "t1"}),
        );
        assert_eq!(
            out,
            "id:        j1\nstatus:    failed\nresource:  server s1\nerror:     image_failed: killed\n\
             created:   t0\nfinished:  t1\n"
        );
    }
}
