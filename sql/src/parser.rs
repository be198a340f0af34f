//! Job files -> statements.
//!
//! The text is tokenized once (sqlparser's tokenizer, so strings and comments are
//! handled) and split at top-level `;`. strata's own statements (`SET`,
//! `CREATE TABLE ... WITH (...)` with a `WATERMARK FOR` clause, `CREATE MODEL`)
//! are parsed here; the query of each `INSERT` is handed to DataFusion as text,
//! padded so that DataFusion's error positions are positions in the job file.

use sqlparser::ast::ColumnDef;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use strata_connectors::{OptionValue, TableOptions};

use crate::error::{Pos, Result};

/// `SET key = value`.
#[derive(Clone, Debug)]
pub struct Setting {
    /// Key, lower-case.
    pub key: String,
    /// Value as written (quotes removed).
    pub value: String,
    /// Where the key is.
    pub pos: Pos,
}

/// `WATERMARK FOR column AS expr`.
#[derive(Clone, Debug)]
pub struct Watermark {
    /// Event-time column.
    pub column: String,
    /// The watermark expression, as SQL.
    pub expr: String,
    /// Where the clause is.
    pub pos: Pos,
}

/// `CREATE TABLE`.
#[derive(Clone, Debug)]
pub struct TableDef {
    /// Table name.
    pub name: String,
    /// Where the name is.
    pub pos: Pos,
    /// Declared columns with their positions, `None` when the list is omitted.
    pub columns: Option<Vec<(ColumnDef, Pos)>>,
    /// Watermark clause, if any.
    pub watermark: Option<Watermark>,
    /// `WITH (...)` options.
    pub options: TableOptions,
    /// Where `WITH` is (for missing-option errors).
    pub with_pos: Pos,
}

/// `CREATE MODEL`.
#[derive(Clone, Debug)]
pub struct ModelDef {
    /// Model alias.
    pub name: String,
    /// Where the name is.
    pub pos: Pos,
    /// Options.
    pub options: TableOptions,
}

/// `INSERT INTO table SELECT ...`.
#[derive(Clone, Debug)]
pub struct InsertDef {
    /// Target table.
    pub table: String,
    /// Where the target name is.
    pub pos: Pos,
    /// The query, padded with whitespace so its positions are the file's.
    pub query: String,
    /// Where the query starts.
    pub query_pos: Pos,
}

/// A statement of a job file.
#[derive(Clone, Debug)]
pub enum Statement {
    /// `SET`.
    Set(Setting),
    /// `CREATE TABLE`.
    CreateTable(TableDef),
    /// `CREATE MODEL`.
    CreateModel(ModelDef),
    /// `INSERT INTO`.
    Insert(InsertDef),
}

/// Parse a (substituted) job text into statements.
pub fn parse_job(file: &str, text: &str) -> Result<Vec<Statement>> {
    let starts = line_starts(text);
    split_statements(file, text)?
        .into_iter()
        .map(|tokens| parse_statement(file, text, &starts, tokens))
        .collect()
}

/// Parse a `strata query` script: any number of `CREATE MODEL` statements, then one query,
/// returned as text for DataFusion.
pub fn parse_query_script(file: &str, text: &str) -> Result<(Vec<ModelDef>, String)> {
    let starts = line_starts(text);
    let mut parts = split_statements(file, text)?;
    let Some(last) = parts.pop() else {
        return Err(Pos { line: 1, column: 1 }.error(file, "no query: write a SELECT statement"));
    };
    let mut models = Vec::new();
    for tokens in parts {
        let at = pos_of(&tokens[0]);
        match parse_statement(file, text, &starts, tokens)? {
            Statement::CreateModel(m) => models.push(m),
            _ => {
                return Err(at.error(
                    file,
                    "only CREATE MODEL statements may come before the query in `strata query`; \
                     declare tables with --table NAME=PATH",
                ))
            }
        }
    }
    let begin = byte_offset(text, &starts, pos_of(&last[0]));
    let end = last
        .last()
        .map(|t| byte_offset(text, &starts, t.span.end.into()))
        .unwrap_or(text.len());
    Ok((models, text[begin..end].to_string()))
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Tokenize and cut at top-level semicolons, dropping whitespace and empty statements.
fn split_statements(file: &str, text: &str) -> Result<Vec<Vec<TokenWithSpan>>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| {
            Pos {
                line: e.location.line,
                column: e.location.column,
            }
            .error(file, format!("syntax error: {}", e.message))
        })?;
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    for t in tokens
        .into_iter()
        .chain(std::iter::once(TokenWithSpan::wrap(Token::SemiColon)))
    {
        if t.token == Token::SemiColon {
            let meaningful: Vec<TokenWithSpan> = current
                .drain(..)
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .collect();
            if !meaningful.is_empty() {
                statements.push(meaningful);
            }
        } else {
            current.push(t);
        }
    }
    Ok(statements)
}

fn pos_of(t: &TokenWithSpan) -> Pos {
    t.span.start.into()
}

/// Byte offset of a (line, column) location; columns count characters.
fn byte_offset(text: &str, line_starts: &[usize], pos: Pos) -> usize {
    let start = line_starts
        .get(pos.line.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(text.len());
    let line = &text[start..];
    let col = pos.column.saturating_sub(1) as usize;
    start
        + line
            .char_indices()
            .nth(col)
            .map(|(i, _)| i)
            .unwrap_or(line.len())
}

fn parse_statement(
    file: &str,
    text: &str,
    line_starts: &[usize],
    tokens: Vec<TokenWithSpan>,
) -> Result<Statement> {
    let first = pos_of(&tokens[0]);
    let last_end: Pos = tokens.last().map(|t| t.span.end.into()).unwrap_or(first);
    let dialect = GenericDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let perr =
        |e: sqlparser::parser::ParserError, at: Pos| at.error(file, format!("syntax error: {e}"));
    if p.parse_keyword(Keyword::SET) {
        let key_tok = p.peek_token();
        let key = parse_key(&mut p).map_err(|m| pos_of(&key_tok).error(file, m))?;
        if !p.consume_token(&Token::Eq) && !p.parse_keyword(Keyword::TO) {
            return Err(pos_of(&p.peek_token()).error(
                file,
                format!("expected '=' after SET {key}: write SET {key} = 'value'"),
            ));
        }
        let vt = p.peek_token();
        let value = parse_value(&mut p).map_err(|m| pos_of(&vt).error(file, m))?;
        expect_end(file, &mut p)?;
        return Ok(Statement::Set(Setting {
            key: key.to_ascii_lowercase(),
            value,
            pos: pos_of(&key_tok),
        }));
    }
    if p.parse_keyword(Keyword::CREATE) {
        if p.parse_keyword(Keyword::TABLE) {
            let _ = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name_tok = p.peek_token();
            let name = p
                .parse_identifier()
                .map_err(|e| perr(e, pos_of(&name_tok)))?
                .value;
            let mut columns = None;
            let mut watermark = None;
            if p.consume_token(&Token::LParen) {
                let mut cols = Vec::new();
                loop {
                    let t = p.peek_token();
                    if matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("watermark"))
                    {
                        p.next_token();
                        if !p.parse_keyword(Keyword::FOR) {
                            return Err(pos_of(&p.peek_token()).error(file, "expected FOR: write WATERMARK FOR column AS column - INTERVAL '5' SECOND"));
                        }
                        let column = p.parse_identifier().map_err(|e| perr(e, pos_of(&t)))?.value;
                        if !p.parse_keyword(Keyword::AS) {
                            return Err(pos_of(&p.peek_token()).error(file, "expected AS: write WATERMARK FOR column AS column - INTERVAL '5' SECOND"));
                        }
                        let expr = p.parse_expr().map_err(|e| perr(e, pos_of(&t)))?;
                        watermark = Some(Watermark {
                            column,
                            expr: expr.to_string(),
                            pos: pos_of(&t),
                        });
                    } else {
                        let c = p.parse_column_def().map_err(|e| perr(e, pos_of(&t)))?;
                        cols.push((c, pos_of(&t)));
                    }
                    if p.consume_token(&Token::Comma) {
                        continue;
                    }
                    if p.consume_token(&Token::RParen) {
                        break;
                    }
                    return Err(pos_of(&p.peek_token())
                        .error(file, "expected ',' or ')' in the column list"));
                }
                columns = Some(cols);
            }
            let with_tok = p.peek_token();
            if !p.parse_keyword(Keyword::WITH) {
                return Err(pos_of(&with_tok).error(file, format!("expected WITH (connector = '...', ...) after the columns of table '{name}'")));
            }
            let options = parse_options(file, &mut p)?;
            expect_end(file, &mut p)?;
            return Ok(Statement::CreateTable(TableDef {
                name,
                pos: pos_of(&name_tok),
                columns,
                watermark,
                options,
                with_pos: pos_of(&with_tok),
            }));
        }
        let t = p.peek_token();
        if matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("model")) {
            p.next_token();
            let name_tok = p.peek_token();
            let name = p
                .parse_identifier()
                .map_err(|e| perr(e, pos_of(&name_tok)))?
                .value;
            if !p.parse_keyword(Keyword::WITH) {
                return Err(pos_of(&p.peek_token()).error(
                    file,
                    format!("expected WITH (provider = '...', ...) after CREATE MODEL {name}"),
                ));
            }
            let options = parse_options(file, &mut p)?;
            expect_end(file, &mut p)?;
            return Ok(Statement::CreateModel(ModelDef {
                name,
                pos: pos_of(&name_tok),
                options,
            }));
        }
        return Err(pos_of(&t).error(file, "expected CREATE TABLE or CREATE MODEL"));
    }
    if p.parse_keyword(Keyword::INSERT) {
        if !p.parse_keyword(Keyword::INTO) {
            return Err(pos_of(&p.peek_token())
                .error(file, "expected INTO: write INSERT INTO table SELECT ..."));
        }
        let name_tok = p.peek_token();
        let table = p
            .parse_identifier()
            .map_err(|e| perr(e, pos_of(&name_tok)))?
            .value;
        let q = p.peek_token();
        if q.token == Token::EOF {
            return Err(pos_of(&name_tok).error(
                file,
                format!("INSERT INTO {table} needs a query: INSERT INTO {table} SELECT ..."),
            ));
        }
        let query_pos = pos_of(&q);
        let start = byte_offset(text, line_starts, query_pos);
        let end = byte_offset(text, line_starts, last_end).max(start);
        // Blank out everything before the query but keep line breaks, so that
        // DataFusion's spans are positions in the job file.
        let mut query: String = text[..start]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        query.push_str(&text[start..end]);
        return Ok(Statement::Insert(InsertDef {
            table,
            pos: pos_of(&name_tok),
            query,
            query_pos,
        }));
    }
    let _ = text;
    Err(first.error(file, "expected SET, CREATE TABLE, CREATE MODEL or INSERT INTO; queries run as INSERT INTO sink SELECT ..."))
}

fn expect_end(file: &str, p: &mut Parser) -> Result<()> {
    let t = p.peek_token();
    if t.token != Token::EOF {
        return Err(pos_of(&t).error(
            file,
            format!("unexpected '{}': end the statement with ';'", t.token),
        ));
    }
    Ok(())
}

/// A key: `'quoted.key'`, `key`, or `dotted.key.name`.
fn parse_key(p: &mut Parser) -> std::result::Result<String, String> {
    let t = p.next_token();
    let mut key = match t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => return Ok(s),
        Token::Word(w) => w.value,
        other => return Err(format!("expected an option name, found '{other}'")),
    };
    while p.consume_token(&Token::Period) {
        match p.next_token().token {
            Token::Word(w) => {
                key.push('.');
                key.push_str(&w.value);
            }
            other => return Err(format!("expected a name after '.', found '{other}'")),
        }
    }
    Ok(key)
}

fn parse_value(p: &mut Parser) -> std::result::Result<String, String> {
    let t = p.next_token();
    match t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Number(n, _) => Ok(n),
        Token::Minus => match p.next_token().token {
            Token::Number(n, _) => Ok(format!("-{n}")),
            other => Err(format!("expected a number after '-', found '{other}'")),
        },
        Token::Word(w) => Ok(w.value),
        other => Err(format!(
            "expected a value ('text', a number, true or false), found '{other}'"
        )),
    }
}

fn parse_options(file: &str, p: &mut Parser) -> Result<TableOptions> {
    let open = p.peek_token();
    if !p.consume_token(&Token::LParen) {
        return Err(pos_of(&open).error(file, "expected '(' after WITH"));
    }
    let mut values: Vec<(String, OptionValue)> = Vec::new();
    if p.consume_token(&Token::RParen) {
        return Ok(TableOptions::default());
    }
    loop {
        let kt = p.peek_token();
        let kpos = pos_of(&kt);
        let key = parse_key(p)
            .map_err(|m| kpos.error(file, m))?
            .to_ascii_lowercase();
        if !p.consume_token(&Token::Eq) {
            return Err(
                pos_of(&p.peek_token()).error(file, format!("expected '=' after option '{key}'"))
            );
        }
        let vt = p.peek_token();
        let value = parse_value(p).map_err(|m| pos_of(&vt).error(file, m))?;
        if values.iter().any(|(k, _)| *k == key) {
            return Err(kpos.error(file, format!("option '{key}' is given twice")));
        }
        values.push((
            key,
            OptionValue {
                value,
                line: kpos.line,
                column: kpos.column,
            },
        ));
        if p.consume_token(&Token::Comma) {
            continue;
        }
        if p.consume_token(&Token::RParen) {
            break;
        }
        return Err(pos_of(&p.peek_token()).error(file, "expected ',' or ')' in the option list"));
    }
    Ok(TableOptions::new(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "SET job.name = 'rag';\n\
CREATE TABLE docs (doc_id TEXT NOT NULL, body TEXT, ts TIMESTAMP,\n  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)\n\
WITH (connector = 'file', path = 'a.jsonl', 'scan.x' = 10);\n\
-- comment; with a semicolon\n\
INSERT INTO out SELECT doc_id FROM docs WHERE body <> ';';\n";

    #[test]
    fn parses_statements_with_positions() {
        let st = parse_job("j.sql", JOB).unwrap();
        assert_eq!(st.len(), 3);
        match &st[0] {
            Statement::Set(s) => {
                assert_eq!((s.key.as_str(), s.value.as_str()), ("job.name", "rag"))
            }
            other => panic!("{other:?}"),
        }
        match &st[1] {
            Statement::CreateTable(t) => {
                assert_eq!(t.name, "docs");
                assert_eq!(t.columns.as_ref().unwrap().len(), 3);
                let wm = t.watermark.as_ref().unwrap();
                assert_eq!(wm.column, "ts");
                assert!(wm.expr.contains("INTERVAL"), "{}", wm.expr);
                assert_eq!(t.options.get("scan.x"), Some("10"));
                assert_eq!(t.options.position("path"), Some((4, 27)));
            }
            other => panic!("{other:?}"),
        }
        match &st[2] {
            Statement::Insert(i) => {
                assert_eq!(i.table, "out");
                assert_eq!(
                    i.query_pos,
                    Pos {
                        line: 6,
                        column: 17
                    }
                );
                assert!(i.query.trim_start().starts_with("SELECT doc_id"));
                assert!(i.query.trim_end().ends_with("';'"), "{}", i.query);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse_job(
            "j.sql",
            "SET a = 1;\nCREATE TABLE t (a TEXT) WITH (connector 'x');",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("j.sql:2:"), "{err}");
        let err = parse_job("j.sql", "\n\nSELEC 1").unwrap_err().to_string();
        assert!(err.starts_with("j.sql:3:1:"), "{err}");
    }
}
