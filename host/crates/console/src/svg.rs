//! Pictures drawn on the server as inline SVG (no script): actions per hour per plugin,
//! the gate's decisions per hour for each plugin, and budgets used against their limits.
//! Every label is escaped.

use minijinja::HtmlEscape;
use riposte_store::{ActionRecord, PluginActivity};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Colours for series, in order (readable on white, distinguishable in grey).
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

const HOUR: i64 = 3_600_000;

/// The number of hourly bars between `from_ms` and `to_ms` (1 to 24 * 90).
fn hours_between(from_ms: i64, to_ms: i64) -> usize {
    ((to_ms - from_ms) / HOUR + 1).clamp(1, 24 * 90) as usize
}

/// The bar of `at_ms` among `hours` bars from `from_ms`.
fn bucket(at_ms: i64, from_ms: i64, hours: usize) -> usize {
    ((at_ms - from_ms) / HOUR).clamp(0, hours as i64 - 1) as usize
}

/// Stacked bars of actions per hour between `from_ms` and `to_ms` (at most 24 * 90
/// bars), one colour per plugin, with a legend. Marked safe: built from escaped text.
pub(crate) fn actions_per_hour(
    actions: &[ActionRecord],
    from_ms: i64,
    to_ms: i64,
) -> minijinja::Value {
    let hours = hours_between(from_ms, to_ms);
    let mut plugins: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for a in actions {
        plugins
            .entry(a.plugin.as_str())
            .or_insert_with(|| vec![0; hours])[bucket(a.created_at_ms, from_ms, hours)] += 1;
    }
    let series: Vec<(&str, &str, Vec<u32>)> = plugins
        .into_iter()
        .enumerate()
        .map(|(i, (plugin, counts))| (plugin, COLOURS[i % COLOURS.len()], counts))
        .collect();
    stacked_bars("actions per hour", &series, (to_ms - from_ms) / HOUR)
}

/// The gate's decisions per hour between `from_ms` and `to_ms`, one chart per plugin
/// with a colour per decision (allowed, awaiting approval, shadowed, denied), from the
/// hourly counts of the store. Plugins with no decision in the span are left out.
pub(crate) fn decisions_per_hour(
    activity: &[PluginActivity],
    from_ms: i64,
    to_ms: i64,
) -> Vec<(String, minijinja::Value)> {
    let hours = hours_between(from_ms, to_ms);
    let mut plugins: BTreeMap<&str, [Vec<u32>; 4]> = BTreeMap::new();
    for a in activity.iter().filter(|a| a.hour_ms + HOUR > from_ms) {
        let counts = plugins
            .entry(a.plugin.as_str())
            .or_insert_with(|| std::array::from_fn(|_| vec![0; hours]));
        let at = bucket(a.hour_ms.max(from_ms), from_ms, hours);
        let d = &a.decisions;
        for (series, n) in counts
            .iter_mut()
            .zip([d.allowed, d.awaiting, d.shadowed, d.denied])
        {
            series[at] = series[at].saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    plugins
        .into_iter()
        .filter(|(_, counts)| counts.iter().flatten().any(|n| *n > 0))
        .map(|(plugin, [allowed, awaiting, shadowed, denied])| {
            let series = [
                ("allowed", "#2ca02c", allowed),
                ("awaiting approval", "#ff7f0e", awaiting),
                ("shadowed", "#9467bd", shadowed),
                ("denied", "#d62728", denied),
            ];
            let label = format!("decisions per hour of {plugin}");
            let chart = stacked_bars(&label, &series, (to_ms - from_ms) / HOUR);
            (plugin.to_owned(), chart)
        })
        .collect()
}

/// Stacked hourly bars of `series` (name, colour, one count per hour; all as long), the
/// last bar being now and the first `span_hours` ago, with a legend giving each total.
fn stacked_bars<S: AsRef<str>>(
    aria: &str,
    series: &[(S, &str, Vec<u32>)],
    span_hours: i64,
) -> minijinja::Value {
    let hours = series.first().map_or(1, |(_, _, v)| v.len());
    let peak = (0..hours)
        .map(|h| series.iter().map(|(_, _, v)| v[h]).sum::<u32>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, left, bottom) = (720.0_f64, 160.0_f64, 36.0_f64, 20.0_f64);
    let bar = (width - left) / hours as f64;
    let scale = (height - bottom - 8.0) / f64::from(peak);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        height + 16.0 * series.len() as f64,
        HtmlEscape(&crate::text::clip(aria, 120)),
    );
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"12\" font-size=\"11\">{peak}</text><text x=\"0\" y=\"{}\" font-size=\"11\">0</text>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{width}\" y2=\"{}\" stroke=\"#888\"/>",
        height - bottom,
        height - bottom,
        height - bottom
    );
    for h in 0..hours {
        let mut y = height - bottom;
        for (_, colour, counts) in series {
            let n = counts[h];
            if n == 0 {
                continue;
            }
            let tall = f64::from(n) * scale;
            y -= tall;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{tall:.1}\" fill=\"{colour}\"><title>{n}</title></rect>",
                left + bar * h as f64,
                (bar - 1.0).max(1.0),
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{}\" font-size=\"11\">{span_hours} h ago</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">now</text>",
        height - 4.0,
        width,
        height - 4.0
    );
    for (i, (name, colour, counts)) in series.iter().enumerate() {
        let y = height + 16.0 * i as f64 + 8.0;
        let _ = write!(
            svg,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{y:.1}\" font-size=\"11\">{} ({})</text>",
            y - 9.0,
            left + 14.0,
            HtmlEscape(&crate::text::clip(name.as_ref(), 60)),
            counts.iter().map(|n| u64::from(*n)).sum::<u64>()
        );
    }
    svg.push_str("</svg>");
    minijinja::Value::from_safe_string(svg)
}

/// One horizontal bar per budget: `(label, used, max)`, used against the limit.
pub(crate) fn budget_bars(budgets: &[(String, u64, u64)]) -> minijinja::Value {
    let (width, row, label) = (720.0_f64, 22.0_f64, 320.0_f64);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {}\" role=\"img\" aria-label=\"budgets used\" xmlns=\"http://www.w3.org/2000/svg\">",
        (row * budgets.len() as f64).max(row)
    );
    if budgets.is_empty() {
        svg.push_str("<text x=\"0\" y=\"15\" font-size=\"12\">no budgets configured</text>");
    }
    for (i, (name, used, max)) in budgets.iter().enumerate() {
        let y = row * i as f64;
        let span = width - label - 60.0;
        let filled = if *max == 0 {
            span
        } else {
            span * (*used as f64 / *max as f64).min(1.0)
        };
        let colour = if used >= max {
            "#d62728"
        } else if *used * 5 >= *max * 4 {
            "#ff7f0e"
        } else {
            "#2ca02c"
        };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">{}</text>\
             <rect x=\"{label}\" y=\"{:.1}\" width=\"{span:.1}\" height=\"14\" fill=\"#eee\" stroke=\"#bbb\"/>\
             <rect x=\"{label}\" y=\"{:.1}\" width=\"{filled:.1}\" height=\"14\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{used}/{max}</text>",
            y + 15.0,
            HtmlEscape(&crate::text::clip(name, 48)),
            y + 3.0,
            y + 3.0,
            label + span + 6.0,
            y + 15.0
        );
    }
    svg.push_str("</svg>");
    minijinja::Value::from_safe_string(svg)
}
