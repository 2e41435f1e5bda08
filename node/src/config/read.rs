//! Reading the file: TOML text to [`File`], with `COHORT_…` environment overrides applied and
//! every parse problem named by its field or variable.

use super::*;

/// Reads `path`, applies `env` overrides and validates every field. Files the config names are
/// checked to exist; their contents are checked when the node loads them (see `keys`).
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_with(path, env, true)
}

/// As [`load`]; without `lock_required` the cluster lock need not exist yet.
pub fn load_with(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    lock_required: bool,
) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    let fail = |problems: Vec<Problem>| ConfigError {
        path: path.to_path_buf(),
        problems: redact(problems, &env),
    };
    let text = std::fs::read_to_string(path).map_err(|err| {
        fail(vec![Problem {
            field: "(file)".into(),
            problem: format!("cannot read it: {err}"),
        }])
    })?;
    let file = parse(&text, env.clone()).map_err(fail)?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate_with(file, base, lock_required).map_err(fail)
}

/// Values shorter than this are left in messages: too short to be a secret, and replacing them
/// would mangle the words around them.
const MIN_REDACTED_LEN: usize = 4;

/// Replaces every override's value in `problems` by the variable's name: an environment
/// variable is where secrets get put (by mistake or on purpose), and error messages end up in
/// terminals, logs and bug reports. The name says where to look.
fn redact(problems: Vec<Problem>, env: &[(String, String)]) -> Vec<Problem> {
    let mut secrets: Vec<&(String, String)> = env
        .iter()
        .filter(|(_, value)| value.len() >= MIN_REDACTED_LEN)
        .collect();
    // Longest first, so a value containing another is replaced whole.
    secrets.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    problems
        .into_iter()
        .map(|mut problem| {
            for (name, value) in &secrets {
                let placeholder = format!("(the value of {name})");
                problem.problem = problem.problem.replace(value.as_str(), &placeholder);
                problem.field = problem.field.replace(value.as_str(), &placeholder);
            }
            problem
        })
        .collect()
}

/// Parses the text and applies overrides; the problems name the field or variable at fault.
pub fn parse(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<File, Vec<Problem>> {
    let mut table: toml::Table = toml::from_str(text).map_err(|err| {
        vec![Problem {
            field: "(syntax)".into(),
            problem: err.to_string().trim().replace('\n', " "),
        }]
    })?;
    let mut overridden = Vec::new();
    let mut problems = Vec::new();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (name, value) in env {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|part| part.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            problems.push(Problem {
                field: name.clone(),
                problem: "names no field (use COHORT_FIELD or COHORT_TABLE__FIELD)".into(),
            });
            continue;
        }
        match set_path(&mut table, &path, env_value(&value)) {
            Ok(()) => overridden.push(name),
            Err(problem) => problems.push(Problem {
                field: name,
                problem,
            }),
        }
    }
    let kind_defaulted = engine::default_kind(&mut table);
    problems.extend(engine::problems(&table));
    if !problems.is_empty() {
        return Err(problems);
    }
    if kind_defaulted && overridden.is_empty() {
        // The text lacks the tag serde needs; only the table has it.
        return toml::Value::Table(table).try_into::<File>().map_err(|err| {
            vec![Problem {
                field: "(file)".into(),
                problem: err.message().to_string(),
            }]
        });
    }
    if overridden.is_empty() {
        // Straight from the text: serde's errors then carry line and column.
        return toml::from_str::<File>(text).map_err(|err| vec![serde_problem(text, &err)]);
    }
    toml::Value::Table(table).try_into::<File>().map_err(|err| {
        vec![Problem {
            field: "(after environment overrides)".into(),
            problem: format!("{} (set by {})", err.message(), overridden.join(", ")),
        }]
    })
}

/// Names the field a serde error points at: the key on the error's line, under the table
/// header above it (or on that line: an error in a whole table points at its header).
fn serde_problem(text: &str, err: &toml::de::Error) -> Problem {
    let Some(span) = err.span() else {
        return Problem {
            field: "(file)".into(),
            problem: err.message().to_string(),
        };
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let line_end = text[before.len()..]
        .find('\n')
        .map_or(text.len(), |at| before.len() + at);
    let through_line = &text[..line_end];
    let table = through_line
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|header| header.trim_matches(|c| c == '[' || c == ']').to_string());
    let key = line_text
        .split_once('=')
        .map(|(key, _)| key.trim().to_string())
        .filter(|key| !key.is_empty() && !key.starts_with('['));
    let field = match (table, key) {
        (Some(table), Some(key)) => format!("{table}.{key}"),
        (None, Some(key)) => key,
        (Some(table), None) => table,
        (None, None) => "(file)".into(),
    };
    Problem {
        field,
        problem: format!("line {line}: {}", err.message()),
    }
}

/// A variable's text as TOML if it reads as a number, boolean or array; otherwise a string.
fn env_value(text: &str) -> toml::Value {
    let scalar = text
        .parse::<i64>()
        .ok()
        .map(toml::Value::Integer)
        .or_else(|| text.parse::<bool>().ok().map(toml::Value::Boolean));
    scalar.unwrap_or_else(|| toml::Value::String(text.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("names no field")?;
    let mut current = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            format!(
                "`{}` is not a table, so it has no field `{}`",
                path[..=depth].join("."),
                path[depth + 1]
            )
        })?;
    }
    current.insert(last.clone(), value);
    Ok(())
}
