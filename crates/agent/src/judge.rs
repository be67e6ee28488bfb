//! Robust parsing of an LLM judge's reply: JSON (`{"correct": false, "step": 3, ...}`), or
//! prose ending in `Correction Start Step: N` as in the method's reference prompts.

use regex::Regex;
use serde_json::Value;

use crate::teacher::Verdict;

fn json_object(text: &str) -> Option<Value> {
    // The first `{ ... }` that parses, fenced or bare.
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(start, c)) in bytes.iter().enumerate() {
        if c != '{' {
            continue;
        }
        let mut depth = 0i32;
        for &(i, d) in &bytes[k..] {
            match d {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Ok(v @ Value::Object(_)) =
                            serde_json::from_str::<Value>(&text[start..=i])
                        {
                            return Some(v);
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn step_number(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().trim_start_matches("Step").trim().parse().ok(),
        _ => None,
    }
}

fn from_json(v: &Value, text: &str) -> Option<Verdict> {
    let o = v.as_object()?;
    let analysis = ["analysis", "error_analysis", "reason", "explanation"]
        .iter()
        .find_map(|k| o.get(*k).and_then(Value::as_str))
        .unwrap_or(text)
        .to_owned();
    let step = [
        "step",
        "earliest_wrong_step",
        "wrong_step",
        "correction_start_step",
        "mistake_step",
    ]
    .iter()
    .find_map(|k| o.get(*k).and_then(step_number));
    let correct = ["correct", "is_correct"]
        .iter()
        .find_map(|k| o.get(*k).and_then(Value::as_bool));
    match (correct, step) {
        (Some(true), _) => Some(Verdict::Correct),
        (_, Some(0)) | (Some(false), None) => Some(Verdict::CannotLocate { analysis }),
        (_, Some(step)) => Some(Verdict::Wrong { step, analysis }),
        (None, None) => None,
    }
}

/// Parse a judge reply. A reply that names no step and does not say "correct" cannot locate
/// the error (a hard sample); it is never an error.
pub fn parse_reply(text: &str) -> Verdict {
    if let Some(v) = json_object(text).and_then(|v| from_json(&v, text)) {
        return v;
    }
    let re = Regex::new(r"(?i)correction\W{0,3}start\W{0,3}step\W{0,5}(?:step\s*)?(\d+)").ok();
    if let Some(m) = re.as_ref().and_then(|re| re.captures_iter(text).last())
        && let Some(step) = m
            .get(1)
            .and_then(|d| d.as_str().parse::<u32>().ok())
            .filter(|s| *s > 0)
    {
        let analysis = text[..m.get(0).map_or(text.len(), |g| g.start())]
            .trim()
            .to_owned();
        return Verdict::Wrong { step, analysis };
    }
    let lower = text.to_lowercase();
    let says_correct = Regex::new(r"(?i)\b(all steps are correct|the (solution|trajectory) is correct|no (error|mistake)s? (was |were )?found)\b")
        .ok()
        .is_some_and(|re| re.is_match(&lower));
    if says_correct {
        Verdict::Correct
    } else {
        Verdict::CannotLocate {
            analysis: text.trim().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_prose() {
        assert_eq!(
            parse_reply(
                "```json\n{\"correct\": false, \"step\": 3, \"analysis\": \"bad sum\"}\n```"
            ),
            Verdict::Wrong {
                step: 3,
                analysis: "bad sum".into()
            }
        );
        assert_eq!(parse_reply("{\"is_correct\": true}"), Verdict::Correct);
        assert_eq!(
            parse_reply(
                "Error Analysis: wrong.\nCorrection Suggestion: redo.\nCorrection Start Step: 2"
            ),
            Verdict::Wrong {
                step: 2,
                analysis: "Error Analysis: wrong.\nCorrection Suggestion: redo.".into()
            }
        );
        assert!(matches!(
            parse_reply("**Correction Start Step:** Step 4"),
            Verdict::Wrong { step: 4, .. }
        ));
        assert_eq!(parse_reply("All steps are correct."), Verdict::Correct);
        assert!(matches!(
            parse_reply("I cannot tell."),
            Verdict::CannotLocate { .. }
        ));
        assert!(matches!(
            parse_reply("{\"step\": \"Step 5\"}"),
            Verdict::Wrong { step: 5, .. }
        ));
        assert!(matches!(
            parse_reply("Correction Start Step: 0"),
            Verdict::CannotLocate { .. }
        ));
    }
}
