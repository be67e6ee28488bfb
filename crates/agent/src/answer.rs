//! Answer checking: `\boxed{}` extraction, LaTeX and number normalisation for math,
//! SQuAD-style token F1 for QA; whether an answer solves a task.

use std::collections::HashMap;

use scorch_tables::Task;

use crate::benchmarks::{answers, kind_of};

/// Whether `answer` solves `task` (exact for the built-in suite; normalised for math;
/// token F1 ≥ 0.5 for QA and search).
pub fn is_correct(task: &Task, answer: Option<&str>) -> bool {
    let Some(a) = answer else { return false };
    if task.suite == "builtin" {
        return a.trim() == task.answer.trim();
    }
    match kind_of(&task.suite) {
        "math" => math_equal(a, &task.answer),
        _ => best_f1(a, &answers(task)) >= 0.5,
    }
}

/// The content of the last `\boxed{...}` (or `\fbox{...}`) in `text`, braces balanced.
pub fn extract_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| (i, m.len())))
        .max()?;
    let rest = text[start.0 + start.1..].trim_start();
    let rest = rest.strip_prefix('{')?;
    let mut depth = 1;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[..i].trim().to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

/// Replace `\frac{a}{b}` (and `\dfrac`, `\tfrac`, `\frac12`) by `(a)/(b)`.
fn fractions(s: &str) -> String {
    let s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\\frac") {
        out.push_str(&rest[..i]);
        let mut tail = &rest[i + 5..];
        let mut parts = Vec::new();
        for _ in 0..2 {
            tail = tail.trim_start();
            if let Some(inner) = tail.strip_prefix('{') {
                let mut depth = 1;
                let mut end = None;
                for (j, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(j) = end else { break };
                parts.push(inner[..j].to_owned());
                tail = &inner[j + 1..];
            } else if let Some(c) = tail.chars().next() {
                parts.push(c.to_string());
                tail = &tail[c.len_utf8()..];
            }
        }
        if parts.len() == 2 {
            out.push_str(&format!("({})/({})", parts[0], parts[1]));
        } else {
            out.push_str("\\frac");
            out.push_str(&parts.concat());
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// A canonical text form of a math answer.
pub fn normalize_math(answer: &str) -> String {
    let mut s = answer.trim().to_owned();
    if let Some(b) = extract_boxed(&s) {
        s = b;
    }
    // Units and text wrappers.
    for wrapper in ["\\text", "\\textbf", "\\mathrm", "\\mbox", "\\operatorname"] {
        while let Some(i) = s.find(&format!("{wrapper}{{")) {
            let after = &s[i + wrapper.len() + 1..];
            let end = after.find('}').unwrap_or(after.len());
            let inner = after[..end].to_owned();
            let keep = if inner
                .trim()
                .chars()
                .all(|c| c.is_alphabetic() || c.is_whitespace())
                && i > 0
            {
                String::new()
            } else {
                inner
            };
            s = format!("{}{}{}", &s[..i], keep, after.get(end + 1..).unwrap_or(""));
        }
    }
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\ ", ""),
        ("$", ""),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\circ", ""),
        ("°", ""),
        ("\\%", "%"),
        ("\\$", ""),
        ("\\displaystyle", ""),
        ("dfrac", "frac"),
        ("tfrac", "frac"),
        ("\\cdot", "*"),
        ("\\times", "*"),
    ] {
        s = s.replace(from, to);
    }
    s = fractions(&s);
    let lower = s.to_lowercase();
    for unit in [
        "degrees", "degree", "units", "unit", "cm", "meters", "inches", "dollars", "cents",
        "hours", "minutes",
    ] {
        if let Some(stripped) = lower.trim_end().strip_suffix(unit)
            && stripped
                .trim_end()
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_digit() || c == ')')
        {
            s = s[..stripped.trim_end().len()].to_owned();
            break;
        }
    }
    let s = s.trim().trim_end_matches('.').trim();
    let s = s
        .strip_prefix("x=")
        .or_else(|| s.strip_prefix("x ="))
        .unwrap_or(s);
    let mut out: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    // Thousands separators: 1,000 → 1000 (only digit groups of three).
    if out.contains(',')
        && out
            .split(',')
            .skip(1)
            .all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
    {
        out = out.replace(',', "");
    }
    out
}

/// The value of a normalised answer, if it is a number (`3`, `-2.5`, `(1)/(2)`, `50%`).
pub fn numeric(normalized: &str) -> Option<f64> {
    let s = normalized.trim();
    if let Some(p) = s.strip_suffix('%') {
        return numeric(p).map(|v| v / 100.0);
    }
    let unparen = |t: &str| {
        t.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .to_owned()
    };
    if let Some((a, b)) = s.split_once('/') {
        let (a, b) = (
            unparen(a).parse::<f64>().ok()?,
            unparen(b).parse::<f64>().ok()?,
        );
        return (b != 0.0).then_some(a / b);
    }
    unparen(s).parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Whether a predicted math answer equals the gold one, after normalisation.
pub fn math_equal(predicted: &str, gold: &str) -> bool {
    let (p, g) = (normalize_math(predicted), normalize_math(gold));
    if p.is_empty() {
        return false;
    }
    if p == g {
        return true;
    }
    match (numeric(&p), numeric(&g)) {
        (Some(a), Some(b)) => {
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * y.abs().max(1.0);
            // "50%" and "50" both answer "what percent": accept either reading.
            close(a, b)
                || (p.ends_with('%') && close(a * 100.0, b))
                || (g.ends_with('%') && close(a, b * 100.0))
        }
        _ => false,
    }
}

/// SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces.
pub fn normalize_qa(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .map(|c| if c.is_ascii_punctuation() { ' ' } else { c })
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// SQuAD-style token F1 between a prediction and one gold answer.
pub fn token_f1(predicted: &str, gold: &str) -> f64 {
    let p = normalize_qa(predicted);
    let g = normalize_qa(gold);
    let (pt, gt): (Vec<&str>, Vec<&str>) = (
        p.split_whitespace().collect(),
        g.split_whitespace().collect(),
    );
    if pt.is_empty() || gt.is_empty() {
        return f64::from(u8::from(pt == gt));
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &gt {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0i64;
    for t in &pt {
        if let Some(c) = counts.get_mut(t)
            && *c > 0
        {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / gt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The best token F1 over several acceptable answers.
pub fn best_f1(predicted: &str, golds: &[String]) -> f64 {
    golds
        .iter()
        .map(|g| token_f1(predicted, g))
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed() {
        assert_eq!(
            extract_boxed("so \\boxed{\\frac{1}{2}} and \\boxed{3}").as_deref(),
            Some("3")
        );
        assert_eq!(
            extract_boxed("x = \\boxed{ \\{1,2\\} }").as_deref(),
            Some("\\{1,2\\}")
        );
        assert_eq!(extract_boxed("\\boxed{unclosed"), None);
        assert_eq!(extract_boxed("no box"), None);
    }

    #[test]
    fn math_equivalence() {
        for (p, g) in [
            ("\\boxed{120}", "120"),
            ("\\frac{1}{2}", "0.5"),
            ("\\dfrac12", "\\frac{1}{2}"),
            ("10\\%", "10"),
            ("10%", "0.1"),
            ("1,000", "1000"),
            ("90^\\circ", "90"),
            ("5 \\text{ cm}", "5"),
            ("x = 3", "3"),
            ("\\left( 1, 2 \\right)", "(1,2)"),
            ("$42$.", "42"),
            ("3.0", "3"),
        ] {
            assert!(
                math_equal(p, g),
                "{p} vs {g}: {} / {}",
                normalize_math(p),
                normalize_math(g)
            );
        }
        for (p, g) in [
            ("121", "120"),
            ("", "0"),
            ("\\frac{1}{3}", "0.3"),
            ("(1,3)", "(1,2)"),
        ] {
            assert!(!math_equal(p, g), "{p} vs {g}");
        }
    }

    #[test]
    fn squad_f1() {
        assert_eq!(token_f1("The Eiffel Tower", "eiffel tower"), 1.0);
        assert!((token_f1("Paris France", "Paris") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(token_f1("London", "Paris"), 0.0);
        assert_eq!(best_f1("paris", &["Rome".into(), "Paris".into()]), 1.0);
        assert_eq!(token_f1("", ""), 1.0);
    }
}
