//! `calc`: a deterministic integer calculator, the tool of the built-in suite.
//!
//! It evaluates `+ - * /` over whole numbers with parentheses; division must be exact, and
//! overflow is an error. `final_answer(EXPR)` ends the episode with the value of `EXPR`.

use std::fmt;

/// What one call of the calculator produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalcResult {
    /// A value, the observation of an ordinary step.
    Value(i64),
    /// `final_answer(...)` with this value.
    Final(i64),
}

/// Why an expression has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalcError(pub String);

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", self.0)
    }
}

/// Evaluate one line of calculator code.
pub fn run(code: &str) -> Result<CalcResult, CalcError> {
    let code = code.trim();
    if let Some(inner) = code.strip_prefix("final_answer").map(str::trim_start) {
        let inner = inner
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| CalcError("write final_answer(VALUE)".into()))?;
        return eval(inner).map(CalcResult::Final);
    }
    eval(code).map(CalcResult::Value)
}

/// Evaluate an arithmetic expression.
pub fn eval(expr: &str) -> Result<i64, CalcError> {
    let tokens = lex(expr)?;
    if tokens.is_empty() {
        return Err(CalcError("empty expression".into()));
    }
    let mut p = Parser { tokens, pos: 0 };
    let v = p.expr()?;
    if p.pos != p.tokens.len() {
        return Err(CalcError(format!("unexpected `{}`", p.tokens[p.pos])));
    }
    Ok(v)
}

/// The integer literals of an expression, in order (for judging which numbers a step used).
pub fn literals(expr: &str) -> Vec<i64> {
    lex(expr)
        .map(|t| {
            t.into_iter()
                .filter_map(|t| if let Tok::Num(n) = t { Some(n) } else { None })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Num(i64),
    Op(char),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Num(n) => write!(f, "{n}"),
            Tok::Op(c) => write!(f, "{c}"),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, CalcError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_digit() {
            let mut n: i64 = 0;
            while let Some(&d) = chars.peek() {
                let Some(digit) = d.to_digit(10) else { break };
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(digit)))
                    .ok_or_else(|| CalcError("number too large".into()))?;
                chars.next();
            }
            out.push(Tok::Num(n));
        } else if "+-*/()".contains(c) {
            out.push(Tok::Op(c));
            chars.next();
        } else {
            return Err(CalcError(format!("unknown symbol `{c}`")));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<Tok> {
        self.tokens.get(self.pos).copied()
    }
    fn expr(&mut self) -> Result<i64, CalcError> {
        let mut v = self.term()?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek() {
            self.pos += 1;
            let r = self.term()?;
            v = if op == '+' {
                v.checked_add(r)
            } else {
                v.checked_sub(r)
            }
            .ok_or_else(|| CalcError("overflow".into()))?;
        }
        Ok(v)
    }
    fn term(&mut self) -> Result<i64, CalcError> {
        let mut v = self.factor()?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.peek() {
            self.pos += 1;
            let r = self.factor()?;
            v = if op == '*' {
                v.checked_mul(r)
                    .ok_or_else(|| CalcError("overflow".into()))?
            } else {
                if r == 0 {
                    return Err(CalcError("division by zero".into()));
                }
                if v % r != 0 {
                    return Err(CalcError(format!("{v} / {r} is not a whole number")));
                }
                v / r
            };
        }
        Ok(v)
    }
    fn factor(&mut self) -> Result<i64, CalcError> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(n)
            }
            Some(Tok::Op('-')) => {
                self.pos += 1;
                self.factor()?
                    .checked_neg()
                    .ok_or_else(|| CalcError("overflow".into()))
            }
            Some(Tok::Op('(')) => {
                self.pos += 1;
                let v = self.expr()?;
                if self.peek() != Some(Tok::Op(')')) {
                    return Err(CalcError("missing `)`".into()));
                }
                self.pos += 1;
                Ok(v)
            }
            Some(t) => Err(CalcError(format!("unexpected `{t}`"))),
            None => Err(CalcError("the expression ends too early".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        assert_eq!(eval("12 + 3 * 5"), Ok(27));
        assert_eq!(eval("(12 + 3) * 5"), Ok(75));
        assert_eq!(eval("60 / 4 - -2"), Ok(17));
        assert_eq!(run("final_answer(23)"), Ok(CalcResult::Final(23)));
        assert_eq!(run(" 7*8 "), Ok(CalcResult::Value(56)));
        assert_eq!(literals("27 - 4 * (3)"), vec![27, 4, 3]);
    }

    #[test]
    fn errors_are_observations_not_panics() {
        assert!(eval("7 / 2").unwrap_err().0.contains("not a whole number"));
        assert!(eval("1 / 0").unwrap_err().0.contains("division by zero"));
        assert!(
            eval("9223372036854775807 + 1")
                .unwrap_err()
                .0
                .contains("overflow")
        );
        assert!(eval("99999999999999999999").is_err());
        assert!(eval("2 +").is_err());
        assert!(eval("(2").is_err());
        assert!(eval("x + 1").unwrap_err().0.contains("unknown symbol `x`"));
        assert!(eval("").is_err());
        assert!(run("final_answer 3").is_err());
        assert!(eval("-(-9223372036854775807 - 1)").is_err());
    }
}
