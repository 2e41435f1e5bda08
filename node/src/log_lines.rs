//! One human log line format for `cohort run` and the simulation: time, level, which operator
//! wrote it, the spans it ran in, target and fields. A cluster's (or a simulation's four
//! operators') lines read alike and can be told apart by `operator=I`.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer, time::FormatTime,
    },
    registry::LookupSpan,
};

/// The line format: `timer` stamps each line. `operator` names this process's operator; a
/// simulation leaves it out and names each operator in a span (`operator=I`) instead.
pub struct Lines<T> {
    pub timer: T,
    pub operator: Option<usize>,
    /// Whether lines name the module that wrote them (a developer's view, not an operator's).
    pub target: bool,
}

impl<S, N, T> FormatEvent<S, N> for Lines<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        self.timer.format_time(&mut writer)?;
        let level = *event.metadata().level();
        if writer.has_ansi_escapes() {
            let colour = match level {
                Level::ERROR => "31",
                Level::WARN => "33",
                Level::INFO => "32",
                Level::DEBUG => "34",
                Level::TRACE => "35",
            };
            write!(writer, " \x1b[{colour}m{:>5}\x1b[0m ", level.as_str())?;
        } else {
            write!(writer, " {:>5} ", level.as_str())?;
        }
        if let Some(operator) = self.operator {
            write!(writer, "operator={operator} ")?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{fields} ")?;
                }
            }
        }
        if self.target {
            write!(writer, "{}: ", event.metadata().target())?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// JSON lines with this process's operator as the first field.
pub struct JsonWithOperator<F> {
    pub inner: F,
    pub operator: usize,
}

impl<S, N, F> FormatEvent<S, N> for JsonWithOperator<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let separator = if rest.starts_with('}') { "" } else { "," };
                write!(writer, "{{\"operator\":{}{separator}{rest}", self.operator)
            }
            None => writer.write_str(&line),
        }
    }
}
