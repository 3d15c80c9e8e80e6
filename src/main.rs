//! The `gatehouse` binary: parses the command line, runs the command, and turns any error into
//! one human-readable line and a non-zero exit code (the only place `anyhow` is used).

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use gatehouse::audit::{query, verify};
use gatehouse::cli::{
    AuditCommand, AuditSource, Cli, Command, EventsCommand, LogFormatArg, QueryArgs,
};
use gatehouse::config::{self, ConfigErrors};
use gatehouse::identity::{api_key, password};
use gatehouse::serve;
use gatehouse::telemetry::LogFormat;

fn main() -> ExitCode {
    // Pick the one crypto provider before anything builds a TLS config (see notes/crates.md).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', "; ")
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            log_format,
            log_level,
        } => {
            let format = match log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("gatehouse")
                .build()
                .context("starting the runtime")?;
            rt.block_on(serve::run(
                config.config.as_deref(),
                format,
                &log_level,
                &env,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => match config::load_default(config.config.as_deref(), &env) {
            Ok(valid) => {
                let source = config::ConfigSource::find(config.config.as_deref());
                for w in &valid.warnings {
                    eprintln!("warning: {source}: {w}");
                }
                println!("ok");
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                print_config_errors(&errors);
                Ok(ExitCode::FAILURE)
            }
        },
        Command::DemoConfig => {
            print!("{}", config::DEMO_CONFIG);
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let pw = line.strip_suffix('\n').unwrap_or(&line);
            let pw = pw.strip_suffix('\r').unwrap_or(pw);
            if pw.is_empty() {
                bail!("no password on stdin (try: printf '%s' 'secret' | gatehouse hash-password)");
            }
            let hash = password::hash(pw).map_err(anyhow::Error::msg)?;
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
        Command::GenApiKey => {
            let (key, hash) = api_key::generate();
            println!("{key}\n{hash}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify {
            source,
            remote: Some(backend),
            pubkey,
            node,
        }) => verify_remote(&source, &backend, pubkey.as_deref(), node.as_deref()),
        Command::Audit(AuditCommand::Pubkey { config }) => {
            let cfg = load_config(config.config.as_deref())?;
            let ship = cfg
                .config
                .audit
                .ship
                .as_ref()
                .context("no [audit.ship] in the config: nothing is signed")?;
            let path = gatehouse::serve::ship_key_path(&cfg, ship);
            let key = gatehouse::ship::checkpoint::load(&path).with_context(
                || "no signing key yet (the first `serve` with [audit.ship] creates it)",
            )?;
            println!(
                "{}",
                gatehouse::ship::checkpoint::public_text(&key.verifying_key())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { source, .. }) => {
            let dir = audit_dir(&source)?;
            match verify::verify(&dir) {
                Ok(report) => {
                    println!("ok: {} records", report.records);
                    for note in &report.notes {
                        println!("note: {note}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => {
                    println!("FAILED: {failure}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Events(cmd) => events_command(cmd),
        Command::Audit(AuditCommand::Query {
            source,
            filter,
            json,
            shipped: Some(backend),
            node,
        }) => {
            let cfg = load_config(source.config.as_deref())?;
            let layout = gatehouse::ship::Layout::new(
                cfg.config
                    .audit
                    .ship
                    .as_ref()
                    .map_or("audit/", |s| s.prefix.as_str()),
            );
            let store = gatehouse::serve::named_backend(&cfg, &backend)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let nodes = match node {
                Some(n) => vec![n],
                None => rt.block_on(gatehouse::ship::verify::shipped_nodes(
                    store.as_ref(),
                    &layout,
                ))?,
            };
            for n in nodes {
                // Each node's files into a directory of their own, queried like local files.
                let dir = std::env::temp_dir()
                    .join(format!("gatehouse-query-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let fetched = rt.block_on(gatehouse::ship::verify::fetch_node(
                    store.as_ref(),
                    &layout,
                    &n,
                    &dir,
                ));
                let result = fetched
                    .map_err(anyhow::Error::from)
                    .and_then(|_| run_query(&dir, None, &filter, json));
                let _ = std::fs::remove_dir_all(&dir);
                result.with_context(|| format!("node {n}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Query {
            source,
            filter,
            json,
            ..
        }) => {
            let (dir, state) = audit_dirs(&source)?;
            let db = state.map(|s| gatehouse::audit::index::path_in(&s));
            run_query(&dir, db.as_deref(), &filter, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Reindex { config }) => {
            let cfg = load_config(config.config.as_deref())?;
            let db = gatehouse::audit::index::path_in(&cfg.config.gateway.state_dir);
            let started = std::time::Instant::now();
            let n = gatehouse::audit::index::rebuild(&db, &cfg.audit_dir)
                .with_context(|| format!("rebuilding {}", db.display()))?;
            println!(
                "indexed {n} records into {} in {:.1} s",
                db.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `audit verify --remote BACKEND`: every node's shipped chain.
fn verify_remote(
    source: &gatehouse::cli::AuditSource,
    backend: &str,
    pubkey: Option<&str>,
    only: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use gatehouse::ship::{self, checkpoint, verify};
    let cfg = load_config(source.config.as_deref())?;
    let ship_cfg = cfg.config.audit.ship.as_ref();
    let key = match pubkey {
        Some(text) => checkpoint::parse_public(text)?,
        None => {
            let ship_cfg = ship_cfg
                .context("no [audit.ship] in the config: give the signing key with --pubkey")?;
            let path = gatehouse::serve::ship_key_path(&cfg, ship_cfg);
            checkpoint::load(&path)
                .with_context(|| format!("reading the signing key {}", path.display()))?
                .verifying_key()
        }
    };
    let layout = ship::Layout::new(ship_cfg.map_or("audit/", |s| s.prefix.as_str()));
    let store = gatehouse::serve::named_backend(&cfg, backend)?;
    let node = gatehouse::serve::node_name(&cfg);
    let state = ship::ShipState::load(&cfg.config.gateway.state_dir)?;
    let local = ship_cfg.map(|_| verify::LocalSide {
        node: &node,
        audit_dir: &cfg.audit_dir,
        state,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut reports = rt.block_on(verify::verify_remote(store.as_ref(), &layout, &key, local))?;
    if let Some(n) = only {
        reports.retain(|r| r.node == n);
    }
    if reports.is_empty() {
        println!("FAILED: nothing shipped under {backend}:{}", layout.root());
        return Ok(ExitCode::FAILURE);
    }
    let mut ok = true;
    for r in &reports {
        if r.problems.is_empty() {
            println!(
                "ok: node {}: {} checkpoints, {} files, {} records (through seq {})",
                r.node, r.checkpoints, r.files, r.records, r.last_seq
            );
        } else {
            ok = false;
            println!("FAILED: node {}:", r.node);
            for p in &r.problems {
                println!("  {p}");
            }
        }
        for n in &r.notes {
            println!("note: node {}: {n}", r.node);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load_config(path: Option<&Path>) -> anyhow::Result<config::ValidConfig> {
    config::load_default(path, &env).map_err(|errors| {
        anyhow::anyhow!(
            "{} (run `gatehouse check` for every error)",
            errors
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_default()
        )
    })
}

fn events_command(cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    use gatehouse::events::{self, message, state};
    let (config, req) = match cmd {
        EventsCommand::List { config, json } => {
            let cfg = load_config(config.config.as_deref())?;
            let dir = state::dir(&cfg.config.gateway.state_dir);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if !json {
                writeln!(
                    out,
                    "{:<16}  {:<8}  {:<40}  {:<27}  SUBJECT",
                    "SINK", "STATE", "ID", "TIME"
                )?;
            }
            for sink in &cfg.events {
                let pending = events::pending(sink, &cfg.config.gateway.state_dir, &cfg.audit_dir)
                    .with_context(|| format!("reading the audit log for sink {}", sink.name))?;
                let dead = state::load_dead(&dir, &sink.name)?;
                let rows = pending
                    .iter()
                    .map(|r| ("pending", r, None))
                    .chain(dead.iter().map(|d| ("dead", &d.record, Some(d))));
                for (what, r, d) in rows {
                    let id = message::event_id(r);
                    if json {
                        let row = serde_json::json!({
                            "sink": sink.name, "state": what, "id": id, "seq": r.seq,
                            "time": r.ts, "action": r.action, "subject": r.path,
                            "attempts": d.map(|d| d.attempts),
                            "last_error": d.map(|d| d.last_error.as_str()),
                        });
                        writeln!(out, "{row}")?;
                    } else {
                        let mut subject = r.path.clone().unwrap_or_default();
                        if let Some(d) = d {
                            subject.push_str(&format!(
                                "  ({} attempts: {})",
                                d.attempts, d.last_error
                            ));
                        }
                        writeln!(
                            out,
                            "{:<16}  {what:<8}  {id:<40}  {:<27}  {subject}",
                            sink.name, r.ts
                        )?;
                    }
                }
            }
            out.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        EventsCommand::Retry { config, sink, ids } => (
            config,
            state::Request {
                op: state::Op::Retry,
                sink,
                ids,
            },
        ),
        EventsCommand::Purge {
            config,
            sink,
            pending,
        } => (
            config,
            state::Request {
                op: if pending {
                    state::Op::PurgePending
                } else {
                    state::Op::PurgeDead
                },
                sink,
                ids: Vec::new(),
            },
        ),
    };
    let cfg = load_config(config.config.as_deref())?;
    if let Some(s) = &req.sink
        && !cfg.events.iter().any(|e| &e.name == s)
    {
        bail!("no [[events]] sink named {s:?} in the config");
    }
    let dir = state::dir(&cfg.config.gateway.state_dir);
    let path = state::file_request(&dir, &req).context("filing the request")?;
    let done = path.with_extension("done");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&done) {
            let _ = std::fs::remove_file(&done);
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    println!(
        "queued: no running gateway applied it within 5 s; it is applied when the gateway starts ({})",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_config_errors(errors: &ConfigErrors) {
    for e in &errors.errors {
        println!("{}: {e}", errors.source_name);
    }
}

fn audit_dir(source: &AuditSource) -> anyhow::Result<std::path::PathBuf> {
    if let Some(d) = &source.dir {
        if !d.is_dir() {
            bail!("{} is not a directory", d.display());
        }
        return Ok(d.clone());
    }
    let cfg = load_config(source.config.as_deref())?;
    Ok(cfg.audit_dir)
}

/// The audit directory and, when a config names it, the state directory (where the index is).
fn audit_dirs(
    source: &AuditSource,
) -> anyhow::Result<(std::path::PathBuf, Option<std::path::PathBuf>)> {
    if source.dir.is_some() {
        return Ok((audit_dir(source)?, None));
    }
    let cfg = load_config(source.config.as_deref())?;
    Ok((cfg.audit_dir, Some(cfg.config.gateway.state_dir)))
}

fn run_query(dir: &Path, db: Option<&Path>, args: &QueryArgs, json: bool) -> anyhow::Result<()> {
    let filter = query::Filter {
        user: args.user.clone(),
        protocol: args.protocol.clone(),
        action: args.action.clone(),
        outcome: args.outcome.clone(),
        path_prefix: args.path_prefix.clone(),
        since: args
            .since
            .as_deref()
            .map(query::normalise_time)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--since")?,
        until: args
            .until
            .as_deref()
            .map(query::normalise_time)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--until")?,
        session: args.session.clone(),
        remote: args.remote.clone(),
        text: args.text.clone(),
        after_seq: None,
        before_seq: None,
        newest_first: false,
        limit: args.limit,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !json {
        writeln!(
            out,
            "{:>6}  {:<27}  {:<5}  {:<12}  {:<8}  {:<7}  {:>10}  PATH / DETAIL",
            "SEQ", "TIME", "PROTO", "USER", "ACTION", "OUTCOME", "BYTES"
        )?;
    }
    let mut write_err = None;
    gatehouse::audit::index_query::search(db, dir, &filter, |rec, line| {
        let r = if json {
            writeln!(out, "{line}")
        } else {
            let mut what = rec.path.clone().unwrap_or_default();
            if let Some(to) = &rec.to {
                what.push_str(" -> ");
                what.push_str(to);
            }
            if let Some(d) = &rec.detail {
                if !what.is_empty() {
                    what.push_str("  ");
                }
                what.push('(');
                what.push_str(d);
                what.push(')');
            }
            writeln!(
                out,
                "{:>6}  {:<27}  {:<5}  {:<12}  {:<8}  {:<7}  {:>10}  {}",
                rec.seq,
                rec.ts,
                rec.protocol.as_deref().unwrap_or("-"),
                rec.user.as_deref().unwrap_or("-"),
                rec.action,
                rec.outcome,
                rec.bytes.map(|b| b.to_string()).unwrap_or_default(),
                what
            )
        };
        match r {
            Ok(()) => true,
            Err(e) => {
                write_err = Some(e);
                false
            }
        }
    })
    .with_context(|| format!("reading {}", dir.display()))?;
    match write_err {
        // A closed pipe (`| head`) is a normal way to stop reading.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e.into()),
        None => {
            out.flush()?;
            Ok(())
        }
    }
}
