//! `ctl log`, `ctl log show ID`, `ctl log verify`: reviewing the operation log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use common::identity::authorized_keys::AuthorizedKeys;
use common::message::Stream;

use super::Exit;
use crate::audit::kept::{kept_path, sha256_hex};
use crate::audit::seal::{self, Location, Operators};
use crate::audit::{AuditLog, Record};
use crate::cli::{LogAction, LogArgs, LogListArgs, LogOptions, LogShowArgs, LogVerifyArgs};
use crate::inventory::Inventory;
use crate::log_view::{self, Filter};
use crate::output::{print_stdout, Controls};
use crate::plan;

pub fn log(args: LogArgs, options: &LogOptions) -> Result<Exit> {
    let log = AuditLog::open(&options.log_dir)?;
    // Listing flags next to `show` or `verify` would be silently ignored: say so instead.
    // (clap's args_conflicts_with_subcommands would also refuse the global flags there.)
    if args.action.is_some() && args.list != LogListArgs::default() {
        anyhow::bail!("the listing filters (--host, --status, -n, ...) go with `ctl log` alone, not with show or verify");
    }
    match args.action {
        None => list(&log, args.list),
        Some(LogAction::Show(show_args)) => show(&log, show_args),
        Some(LogAction::Verify(verify_args)) => verify(&log, verify_args),
    }
}

fn list(log: &AuditLog, args: LogListArgs) -> Result<Exit> {
    let ops = log_view::collect_ops(&log.read_lines()?);
    let filter = Filter {
        host: args.host,
        group: args.group,
        user: args.user,
        kind: args.kind,
        status: args.status,
        since: args.since,
        until: args.until,
        grep: args.grep,
    };
    let shown: Vec<&log_view::OpView> = ops
        .iter()
        .filter(|op| filter.matches(op))
        .take(args.limit)
        .collect();
    if args.json {
        let lines: String = shown
            .iter()
            .flat_map(|op| op.raw_lines())
            .map(|line| format!("{line}\n"))
            .collect();
        print_stdout(&lines);
    } else if shown.is_empty() {
        eprintln!("ctl: no operations match");
    } else {
        print_stdout(&log_view::render_list(&shown, log_view::use_colour()));
    }
    Ok(Exit::Success)
}

fn show(log: &AuditLog, args: LogShowArgs) -> Result<Exit> {
    let ops = log_view::collect_ops(&log.read_lines()?);
    let op = log_view::find_op(&ops, &args.id)?;
    if args.json {
        let lines: String = op.raw_lines().map(|line| format!("{line}\n")).collect();
        print_stdout(&lines);
    } else {
        print_stdout(&log_view::render_show(
            op,
            log.dir(),
            log_view::use_colour(),
            Controls::for_ctl_output(false).stdout,
        ));
    }
    Ok(Exit::Success)
}

/// Checks every record's signature against the operators' public keys and walks the chain,
/// then checks every kept output file against the hash its end record holds. Exit 0 when
/// all is intact, 1 at the first break (named with file and line).
fn verify(log: &AuditLog, args: LogVerifyArgs) -> Result<Exit> {
    let operators = load_operators(&operators_file(&args)?)?;
    let lines = log.read_lines()?;
    let intact = match seal::verify(&operators, &lines) {
        Ok(intact) => intact,
        Err(broken) => {
            print_stdout(&format!(
                "broken: {} line {}: {}\n",
                broken.at.file.display(),
                broken.at.line,
                broken.problem
            ));
            return Ok(Exit::SomeHostsFailed);
        }
    };
    if let Some(problem) = first_altered_output(log, &lines) {
        print_stdout(&format!("broken: {problem}\n"));
        return Ok(Exit::SomeHostsFailed);
    }
    let files: HashSet<_> = lines.iter().map(|(at, _)| &at.file).collect();
    print_stdout(&format!(
        "intact: {} records in {} file{}; head seq {} sha256 {}\n",
        intact.records,
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        intact.head_seq,
        intact.head_sha256
    ));
    Ok(Exit::Success)
}

/// The file of operator keys: `--operators`, else the `.pub` beside the identity ctl would
/// use. Only the public half is ever read, so an auditor needs no private key.
fn operators_file(args: &LogVerifyArgs) -> Result<PathBuf> {
    if let Some(file) = &args.operators {
        return Ok(file.clone());
    }
    let identity = match &args.identity {
        // An identity named outright needs no inventory to find it.
        Some(path) => path.clone(),
        None => {
            let inventory = Inventory::load(&args.inventory).context(
                "no --operators or --identity given, so the inventory is read to find the identity",
            )?;
            plan::identity_path(None, &inventory)?
        }
    };
    let mut public = identity.into_os_string();
    public.push(".pub");
    Ok(PathBuf::from(public))
}

/// The keys of an `authorized_keys` file; lines that cannot be used are warned about with
/// their numbers, and the others still count.
fn load_operators(file: &Path) -> Result<Operators> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the operators' keys {}", file.display()))?;
    let (keys, warnings) = AuthorizedKeys::parse(&text);
    for warning in warnings {
        tracing::warn!(file = %file.display(), "{warning}");
    }
    if keys.is_empty() {
        bail!("{} holds no operator key", file.display());
    }
    let keys = keys.entries().iter().map(|entry| entry.key().clone());
    Ok(Operators::new(keys.collect(), file.display()))
}

fn first_altered_output(log: &AuditLog, lines: &[(Location, String)]) -> Option<String> {
    for (at, raw) in lines {
        let Ok(record) = serde_json::from_str::<Record>(raw) else {
            continue;
        };
        for result in record.results.iter().flatten() {
            let streams = [
                (Stream::Stdout, &result.kept_stdout),
                (Stream::Stderr, &result.kept_stderr),
            ];
            for (stream, kept) in streams {
                let Some(kept) = kept else { continue };
                let path = kept_path(log.dir(), &record.op_id, &result.host, stream);
                let matches =
                    std::fs::read(&path).is_ok_and(|bytes| sha256_hex(&bytes) == kept.sha256);
                if !matches {
                    return Some(format!(
                        "{} (kept output of {} in the record at {} line {}) is missing or altered",
                        path.display(),
                        result.host,
                        at.file.display(),
                        at.line
                    ));
                }
            }
        }
    }
    None
}
