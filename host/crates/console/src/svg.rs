//! Pictures drawn on the server as inline SVG (no script): actions per hour per plugin,
//! and budgets used against their limits. Every label is escaped.

use minijinja::HtmlEscape;
use riposte_store::ActionRecord;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Colours for series, in order (readable on white, distinguishable in grey).
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// Stacked bars of actions per hour between `from_ms` and `to_ms` (at most 24 * 90
/// bars), one colour per plugin, with a legend. Marked safe: built from escaped text.
pub(crate) fn actions_per_hour(
    actions: &[ActionRecord],
    from_ms: i64,
    to_ms: i64,
) -> minijinja::Value {
    const HOUR: i64 = 3_600_000;
    let hours = ((to_ms - from_ms) / HOUR + 1).clamp(1, 24 * 90) as usize;
    let mut plugins: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for a in actions {
        let bucket = ((a.created_at_ms - from_ms) / HOUR).clamp(0, hours as i64 - 1) as usize;
        plugins
            .entry(a.plugin.as_str())
            .or_insert_with(|| vec![0; hours])[bucket] += 1;
    }
    let peak = (0..hours)
        .map(|h| plugins.values().map(|v| v[h]).sum::<u32>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, left, bottom) = (720.0_f64, 160.0_f64, 36.0_f64, 20.0_f64);
    let bar = (width - left) / hours as f64;
    let scale = (height - bottom - 8.0) / f64::from(peak);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {}\" role=\"img\" aria-label=\"actions per hour\" xmlns=\"http://www.w3.org/2000/svg\">",
        height + 16.0 * plugins.len() as f64
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
        for (i, counts) in plugins.values().enumerate() {
            let n = counts[h];
            if n == 0 {
                continue;
            }
            let tall = f64::from(n) * scale;
            y -= tall;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{tall:.1}\" fill=\"{}\"><title>{n}</title></rect>",
                left + bar * h as f64,
                (bar - 1.0).max(1.0),
                COLOURS[i % COLOURS.len()]
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{}\" font-size=\"11\">{} h ago</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">now</text>",
        height - 4.0,
        (to_ms - from_ms) / HOUR,
        width,
        height - 4.0
    );
    for (i, (plugin, counts)) in plugins.iter().enumerate() {
        let y = height + 16.0 * i as f64 + 8.0;
        let _ = write!(
            svg,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{y:.1}\" font-size=\"11\">{} ({})</text>",
            y - 9.0,
            COLOURS[i % COLOURS.len()],
            left + 14.0,
            HtmlEscape(&crate::text::clip(plugin, 60)),
            counts.iter().sum::<u32>()
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
