//! A repository check, run as a test: the defaults a person reads agree with the defaults in code.
//!
//! Three places state every setting's default: the code (`chat_core::Config::default()`,
//! `ServerConfig::default()`, the client's `DEFAULT_*` constants), the `--help` text (the
//! `[env CHAT_X, default Y]` note in each argh doc comment) and the configuration table of the
//! operator's manual, docs/operating.md.
//! The check reads the source files as text rather than running the binaries: it stays cheap
//! (no build) and a default it cannot read is reported as a problem, never skipped.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::project_root;

    /// The files the check reads, as text, so a test can doctor one.
    struct Sources {
        room: String,
        server_config: String,
        client_config: String,
        readme: String,
    }

    impl Sources {
        fn read() -> Self {
            let read = |path: &str| {
                std::fs::read_to_string(project_root().join(path))
                    .unwrap_or_else(|e| panic!("read {path}: {e}"))
            };
            Self {
                room: read("chat-core/src/config.rs"),
                server_config: read("chat-server/src/config.rs"),
                client_config: read("chat-client/src/config.rs"),
                readme: read("docs/operating.md"),
            }
        }
    }

    /// A setting's `--help` note: the variable it names and its default (`None` for `else ...`).
    #[derive(Debug, PartialEq)]
    struct HelpNote {
        var: String,
        default: Option<String>,
    }

    /// Reduces a default written in Rust to the form `--help` and the manual use: `10_000` and
    /// `10 * 1000` to `10000`, `Duration::from_secs(10)` to `10s`, `"h".into()` to `h`.
    fn canonical(expr: &str) -> Option<String> {
        let expr = expr.trim().trim_end_matches(',').trim();
        let expr = expr
            .strip_suffix(".into()")
            .or_else(|| expr.strip_suffix(".to_string()"))
            .unwrap_or(expr);
        if let Some(text) = expr.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
            return Some(text.to_owned());
        }
        // The client's on/off settings: `SwitchDefault::Interactive` reads `interactive`.
        if let Some(variant) = expr.strip_prefix("SwitchDefault::") {
            return Some(variant.to_lowercase());
        }
        for (call, unit) in [
            ("Duration::from_secs(", "s"),
            ("Duration::from_millis(", "ms"),
        ] {
            if let Some(inner) = expr.strip_prefix(call).and_then(|e| e.strip_suffix(')')) {
                return Some(format!("{}{unit}", number(inner)?));
            }
        }
        number(expr).map(|n| n.to_string())
    }

    /// `1_024` or `256 * 1024`.
    fn number(expr: &str) -> Option<u64> {
        expr.split('*')
            .map(|factor| factor.trim().replace('_', "").parse::<u64>().ok())
            .product()
    }

    /// The `field: expr,` lines of the block that opens with `opening` (e.g. an `impl Default`).
    fn fields_of(text: &str, opening: &str) -> Result<BTreeMap<String, String>, String> {
        let start = text
            .find(opening)
            .ok_or_else(|| format!("no `{opening}` found"))?;
        let mut fields = BTreeMap::new();
        for line in text[start..].lines().skip(1) {
            let line = line.trim();
            if line == "}" {
                break;
            }
            if let Some((field, expr)) = line.split_once(": ") {
                fields.insert(field.to_owned(), expr.to_owned());
            }
        }
        Ok(fields)
    }

    /// Each `pub FIELD: Option<String>` (or `Vec<String>`, a repeatable option) and
    /// `pub FIELD: bool` (a switch) of `struct Args` with
    /// the help note in its doc comment, except a `no_FIELD` that turns a switch off (it must
    /// follow its `FIELD`).
    fn help_notes(text: &str) -> Result<Vec<(String, Option<HelpNote>)>, String> {
        let start = text
            .find("pub struct Args {")
            .ok_or("no `pub struct Args` found")?;
        let mut out = Vec::new();
        let mut doc = String::new();
        for line in text[start..].lines().skip(1) {
            let line = line.trim();
            if line == "}" {
                break;
            }
            if let Some(comment) = line.strip_prefix("///") {
                doc.push_str(comment);
            } else if let Some(field) = line.strip_prefix("pub ").and_then(|l| {
                l.strip_suffix(": Option<String>,")
                    .or_else(|| l.strip_suffix(": Vec<String>,"))
            }) {
                out.push((field.to_owned(), help_note(&doc)));
                doc.clear();
            } else if let Some(field) = line
                .strip_prefix("pub ")
                .and_then(|l| l.strip_suffix(": bool,"))
            {
                match field.strip_prefix("no_") {
                    Some(on) if out.last().is_some_and(|(last, _)| last == on) => {}
                    Some(on) => return Err(format!("--no-{on} does not follow a --{on} switch")),
                    None => out.push((field.to_owned(), help_note(&doc))),
                }
                doc.clear();
            }
        }
        Ok(out)
    }

    /// `... [env CHAT_X, default Y]` or `... [env CHAT_X, else ...]`.
    fn help_note(doc: &str) -> Option<HelpNote> {
        let note = doc.rsplit_once("[env ")?.1.strip_suffix(']')?;
        let (var, rest) = note.split_once(", ")?;
        let default = match rest.strip_prefix("default ") {
            Some(value) => Some(value.to_owned()),
            None => {
                rest.strip_prefix("else ")?;
                None
            }
        };
        Some(HelpNote {
            var: var.to_owned(),
            default,
        })
    }

    /// The manual's rows of the configuration table: (program, flag) to (variable, first word of the
    /// default, backticks removed).
    fn readme_rows(readme: &str) -> BTreeMap<(String, String), (String, String)> {
        let mut rows = BTreeMap::new();
        let Some(start) = readme.find("| program | flag | variable | default |") else {
            return rows;
        };
        for line in readme[start..].lines().skip(2) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, program, flag, var, default, _] = cells[..] else {
                break;
            };
            let unquote = |cell: &str| cell.replace('`', "");
            let first = default.split_whitespace().next().unwrap_or("");
            rows.insert(
                (program.to_owned(), unquote(flag)),
                (unquote(var), unquote(first)),
            );
        }
        rows
    }

    /// The defaults in code of one program's flags: flag name (without dashes) to its default,
    /// `None` where there is none (asked for).
    fn code_defaults(
        program: &str,
        sources: &Sources,
    ) -> Result<BTreeMap<String, Option<String>>, String> {
        let mut defaults = BTreeMap::new();
        if program == "server" {
            let room = fields_of(&sources.room, "impl Default for Config {")?;
            let server = fields_of(&sources.server_config, "impl Default for ServerConfig {")?;
            let shared = fields_of(&sources.server_config, "impl Default for SharedConfig {")?;
            for (field, note) in help_notes(&sources.server_config)? {
                // A setting that is off or computed when not given (`[env X, else ...]`) has
                // no default in code to compare.
                if note.is_some_and(|n| n.default.is_none()) {
                    defaults.insert(field, None);
                    continue;
                }
                // The one flag whose field has another name.
                let code_field = if field == "rate" {
                    "rate_per_sec"
                } else {
                    &field
                };
                // The shared room's flags are fields of `SharedConfig` (`room` is also a field
                // of `ServerConfig`, the room's limits).
                let shared_flag = ["room", "lease", "trim_len"].contains(&code_field);
                let expr = if shared_flag {
                    shared.get(code_field)
                } else {
                    server.get(code_field).or_else(|| room.get(code_field))
                }
                .ok_or_else(|| format!("server --{field}: no default in code found"))?;
                // A setting that is off unless given (`None`, an empty list) has no default.
                let value = match expr.trim().trim_end_matches(',') {
                    "None" | "Vec::new()" => None,
                    "false" => Some("off".to_owned()),
                    _ => Some(canonical(expr).ok_or_else(|| {
                        format!("server --{field}: cannot read its default `{expr}`; teach tidy.rs")
                    })?),
                };
                defaults.insert(field, value);
            }
        } else {
            let constant = |name: &str| {
                let line = sources
                    .client_config
                    .lines()
                    .find(|l| l.starts_with(&format!("pub const {name}:")))
                    .ok_or_else(|| format!("client: no `pub const {name}` found"))?;
                let expr = line
                    .split_once('=')
                    .map_or("", |(_, e)| e)
                    .trim_end_matches(';');
                canonical(expr).ok_or_else(|| format!("client: cannot read `{line}`"))
            };
            defaults.insert("host".to_owned(), Some(constant("DEFAULT_HOST")?));
            defaults.insert("port".to_owned(), Some(constant("DEFAULT_PORT")?));
            defaults.insert("name".to_owned(), None);
            for switch in ["reconnect", "timestamps", "bell", "tls"] {
                let constant_name = format!("DEFAULT_{}", switch.to_uppercase());
                defaults.insert(switch.to_owned(), Some(constant(&constant_name)?));
            }
        }
        Ok(defaults)
    }

    /// Every disagreement between code, `--help` and the manual, one line each.
    fn problems(sources: &Sources) -> Vec<String> {
        let mut problems = Vec::new();
        let readme = readme_rows(&sources.readme);
        if readme.is_empty() {
            problems.push("docs/operating.md: no configuration table found".to_owned());
        }
        let mut documented = Vec::new();
        for (program, config) in [
            ("server", &sources.server_config),
            ("client", &sources.client_config),
        ] {
            let notes = help_notes(config);
            let (notes, defaults) = match (notes, code_defaults(program, sources)) {
                (Ok(notes), Ok(defaults)) => (notes, defaults),
                (Err(e), _) | (_, Err(e)) => {
                    problems.push(format!("{program}: {e}"));
                    continue;
                }
            };
            for (field, note) in notes {
                let flag = format!("--{}", field.replace('_', "-"));
                let var = format!("CHAT_{}", field.to_uppercase());
                let default = defaults.get(&field).cloned().flatten();
                let shown = default.as_deref().unwrap_or("(none)");
                match note {
                    None => problems.push(format!(
                        "{program} {flag}: --help has no [env {var}, default {shown}] note"
                    )),
                    Some(note) => {
                        if note.var != var {
                            problems.push(format!(
                                "{program} {flag}: --help names {}, the code reads {var}",
                                note.var
                            ));
                        }
                        if note.default != default {
                            problems.push(format!(
                                "{program} {flag}: --help says default {}, the code has {shown}",
                                note.default.as_deref().unwrap_or("(none)")
                            ));
                        }
                    }
                }
                let row = readme
                    .get(&(program.to_owned(), flag.clone()))
                    .or_else(|| readme.get(&("both".to_owned(), flag.clone())));
                match row {
                    None => problems.push(format!(
                        "{program} {flag}: no row in docs/operating.md's configuration table"
                    )),
                    Some((row_var, row_default)) => {
                        if *row_var != var {
                            problems.push(format!(
                                "{program} {flag}: docs/operating.md names {row_var}, the code reads {var}"
                            ));
                        }
                        if let Some(default) = &default
                            && row_default != default
                        {
                            problems.push(format!(
                                "{program} {flag}: docs/operating.md says default {row_default}, the code has {default}"
                            ));
                        }
                    }
                }
                documented.push((program.to_owned(), flag));
            }
        }
        for (program, flag) in readme.keys() {
            let known = |p: &str| documented.contains(&(p.to_owned(), flag.clone()));
            let exists = match program.as_str() {
                "both" => known("server") && known("client"),
                p => known(p),
            };
            if !exists {
                problems.push(format!(
                    "docs/operating.md: row for {program} {flag}, which has no such flag"
                ));
            }
        }
        problems
    }

    #[test]
    fn readme_and_help_state_the_defaults_in_code() {
        let problems = problems(&Sources::read());
        assert!(
            problems.is_empty(),
            "defaults disagree:\n{}",
            problems.join("\n")
        );
    }

    /// Replaces `from` (which must occur once) with `to`.
    fn doctor(text: &str, from: &str, to: &str) -> String {
        assert_eq!(text.matches(from).count(), 1, "doctoring `{from}`");
        text.replacen(from, to, 1)
    }

    #[test]
    fn a_default_changed_in_code_alone_is_caught_in_help_and_readme() {
        let mut sources = Sources::read();
        sources.room = doctor(&sources.room, "rate_per_sec: 20,", "rate_per_sec: 25,");
        assert_eq!(
            problems(&sources),
            [
                "server --rate: --help says default 20, the code has 25",
                "server --rate: docs/operating.md says default 20, the code has 25",
            ]
        );
    }

    #[test]
    fn a_duration_or_product_changed_in_code_is_caught() {
        let mut sources = Sources::read();
        sources.room = doctor(
            &sources.room,
            "idle_timeout: Duration::from_secs(90),",
            "idle_timeout: Duration::from_millis(90),",
        );
        sources.server_config = doctor(
            &sources.server_config,
            "queue_bytes: 256 * 1024,",
            "queue_bytes: 128 * 1024,",
        );
        assert_eq!(
            problems(&sources),
            [
                "server --queue-bytes: --help says default 262144, the code has 131072",
                "server --queue-bytes: docs/operating.md says default 262144, the code has 131072",
                "server --idle-timeout: --help says default 90s, the code has 90ms",
                "server --idle-timeout: docs/operating.md says default 90s, the code has 90ms",
            ]
        );
    }

    #[test]
    fn a_drifted_help_note_or_readme_row_is_caught() {
        let mut sources = Sources::read();
        sources.client_config = doctor(
            &sources.client_config,
            "[env CHAT_PORT, default 7878]",
            "[env CHAT_PORT, default 7979]",
        );
        sources.server_config = doctor(
            &sources.server_config,
            "[env CHAT_BURST, default 40]",
            "[env CHAT_BURSTS, default 40]",
        );
        sources.readme = doctor(
            &sources.readme,
            "| server | `--max-clients` | `CHAT_MAX_CLIENTS` | 10000 |",
            "| server | `--max-clients` | `CHAT_MAX_CLIENTS` | 1000 |",
        );
        assert_eq!(
            problems(&sources),
            [
                "server --max-clients: docs/operating.md says default 1000, the code has 10000",
                "server --burst: --help names CHAT_BURSTS, the code reads CHAT_BURST",
                "client --port: --help says default 7979, the code has 7878",
            ]
        );
    }

    #[test]
    fn a_missing_note_or_row_and_a_stale_row_are_caught() {
        let mut sources = Sources::read();
        sources.server_config = doctor(
            &sources.server_config,
            " [env CHAT_FLOOD_STRIKES, default 40]",
            "",
        );
        sources.readme = doctor(
            &sources.readme,
            "| server | `--ping-interval` |",
            "| server | `--ping-every` |",
        );
        assert_eq!(
            problems(&sources),
            [
                "server --flood-strikes: --help has no [env CHAT_FLOOD_STRIKES, default 40] note",
                "server --ping-interval: no row in docs/operating.md's configuration table",
                "docs/operating.md: row for server --ping-every, which has no such flag",
            ]
        );
    }

    #[test]
    fn a_client_switch_is_checked_like_an_option() {
        let mut sources = Sources::read();
        sources.client_config = doctor(
            &sources.client_config,
            "pub const DEFAULT_BELL: SwitchDefault = SwitchDefault::Off;",
            "pub const DEFAULT_BELL: SwitchDefault = SwitchDefault::Interactive;",
        );
        sources.readme = doctor(
            &sources.readme,
            "| client | `--timestamps` | `CHAT_TIMESTAMPS` | interactive",
            "| client | `--timestamps` | `CHAT_TIMESTAMP` | interactive",
        );
        assert_eq!(
            problems(&sources),
            [
                "client --timestamps: docs/operating.md names CHAT_TIMESTAMP, the code reads CHAT_TIMESTAMPS",
                "client --bell: --help says default off, the code has interactive",
                "client --bell: docs/operating.md says default off, the code has interactive",
            ]
        );
    }

    #[test]
    fn rust_defaults_read_as_the_docs_write_them() {
        assert_eq!(canonical("10_000,").as_deref(), Some("10000"));
        assert_eq!(canonical("256 * 1024").as_deref(), Some("262144"));
        assert_eq!(
            canonical("Duration::from_secs(10),").as_deref(),
            Some("10s")
        );
        assert_eq!(
            canonical("Duration::from_millis(500)").as_deref(),
            Some("500ms")
        );
        assert_eq!(
            canonical("\"127.0.0.1\".into(),").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            canonical("SwitchDefault::Interactive").as_deref(),
            Some("interactive")
        );
        assert_eq!(canonical("Duration::from_secs_f64(1.5)"), None);
        assert_eq!(canonical("DEFAULT * 2"), None);
    }
}
