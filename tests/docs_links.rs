//! Every relative link and every repository path the documentation names exists.
//!
//! Documents: `README.md`, `docs/*.md`, `examples/door-lock-platform/README.md`, every
//! `README.md` under `wasm-sdk/`, `wasm-sdk/ABI.md` and `rules/examples/README.md`. In
//! each, outside fenced code blocks (commands and their output, not references):
//!
//! - every Markdown link target `](path)` or `](path#anchor)` that is not a URL
//!   (`http:`, `https:`, `mailto:`) or an anchor of the same page must exist, relative
//!   to the document;
//! - every inline code span that looks like a repository path (it starts with one of
//!   `PREFIXES` and holds no space, `*`, `<`, `{` or `...`) must exist, relative to the
//!   repository's root, once a trailing `#anchor`, `:line` or `/` is taken off.
//!
//! On failure the test lists every broken link and path with its document and line.

use std::path::{Path, PathBuf};

/// Where a code span must start to be taken as a path in the repository.
const PREFIXES: [&str; 9] = ["src/", "tests/", "rules/", "wasm-sdk/", "examples/", "bench/", "benches/", "docs/", ".ci/"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documents checked, relative to the root; a missing one is reported by the caller.
fn documents() -> Vec<PathBuf> {
    let mut documents: Vec<PathBuf> =
        ["README.md", "examples/door-lock-platform/README.md", "wasm-sdk/ABI.md", "rules/examples/README.md"].map(PathBuf::from).into();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .map(|entries| {
            entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|path| path.extension().is_some_and(|e| e == "md")).collect()
        })
        .unwrap_or_default();
    docs.sort();
    assert!(!docs.is_empty(), "no docs/*.md found under {}", root().display());
    documents.extend(docs.into_iter().map(|path| path.strip_prefix(root()).expect("under the root").to_path_buf()));
    let mut readmes = Vec::new();
    readmes_under(&root().join("wasm-sdk"), &mut readmes);
    readmes.sort();
    assert!(!readmes.is_empty(), "no README.md found under wasm-sdk/");
    documents.extend(readmes.into_iter().map(|path| path.strip_prefix(root()).expect("under the root").to_path_buf()));
    documents
}

/// Every `README.md` under `dir`, not looking into build output, packages or hidden folders.
fn readmes_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                readmes_under(&path, out);
            }
        } else if name == "README.md" {
            out.push(path);
        }
    }
}

/// The paragraphs of a Markdown text outside fenced code blocks: the line number (from 1)
/// of each paragraph's first line, and its lines joined by `\n`.
fn paragraphs(text: &str) -> Vec<(usize, String)> {
    let mut paragraphs = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut fence: Option<&str> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|marker| trimmed.starts_with(marker));
        match (fence, marker) {
            (None, Some(marker)) => {
                fence = Some(marker);
                paragraphs.extend(current.take());
                continue;
            }
            (Some(open), Some(marker)) if open == marker => {
                fence = None;
                continue;
            }
            (Some(_), _) => continue,
            (None, None) => {}
        }
        if line.trim().is_empty() {
            paragraphs.extend(current.take());
        } else if let Some((_, paragraph)) = current.as_mut() {
            paragraph.push('\n');
            paragraph.push_str(line);
        } else {
            current = Some((n + 1, line.to_string()));
        }
    }
    paragraphs.extend(current);
    paragraphs
}

/// The inline code spans of a paragraph (CommonMark: a run of N backticks up to the next
/// run of exactly N), each with its byte range, content included.
fn code_spans(paragraph: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let bytes = paragraph.as_bytes();
    let run_at = |at: usize| bytes[at..].iter().take_while(|&&b| b == b'`').count();
    let mut spans = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'`' {
            at += 1;
            continue;
        }
        let open = run_at(at);
        let content = at + open;
        let mut close = content;
        let mut found = None;
        while close < bytes.len() {
            if bytes[close] == b'`' {
                let run = run_at(close);
                if run == open {
                    found = Some(close);
                    break;
                }
                close += run;
            } else {
                close += 1;
            }
        }
        match found {
            Some(end) => {
                spans.push((at..end + open, &paragraph[content..end]));
                at = end + open;
            }
            None => at = content,
        }
    }
    spans
}

/// The targets of the Markdown links of a paragraph, outside code spans, each with the
/// byte offset it starts at.
fn link_targets(paragraph: &str) -> Vec<(usize, String)> {
    let mut text = paragraph.to_string();
    for (range, _) in code_spans(paragraph) {
        // Byte for byte, so offsets into `text` are offsets into `paragraph`.
        let blank: String = paragraph.as_bytes()[range.clone()].iter().map(|&b| if b == b'\n' { '\n' } else { ' ' }).collect();
        text.replace_range(range, &blank);
    }
    let mut targets = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("](") {
        let start = from + found + 2;
        let rest = &text[start..];
        let target = match rest.strip_prefix('<') {
            Some(inner) => inner.split('>').next().unwrap_or(""),
            None => rest.split(|c: char| c == ')' || c.is_whitespace()).next().unwrap_or(""),
        };
        targets.push((start, target.to_string()));
        from = start;
    }
    targets
}

/// A link target as a path relative to its document, or `None` when it names none.
fn link_path(target: &str) -> Option<&str> {
    let external = ["http://", "https://", "mailto:"].iter().any(|scheme| target.starts_with(scheme));
    let path = target.split(['#', '?']).next().unwrap_or("");
    (!external && !path.is_empty()).then_some(path)
}

/// A code span as a repository path, or `None` when it does not look like one.
fn repository_path(span: &str) -> Option<&str> {
    let span = span.trim();
    let looks_like_one = PREFIXES.iter().any(|prefix| span.starts_with(prefix))
        && !span.contains(|c: char| c.is_whitespace() || matches!(c, '*' | '<' | '{'))
        && !span.contains("...");
    if !looks_like_one {
        return None;
    }
    let mut path = span.split('#').next().unwrap_or("");
    if let Some((before, line)) = path.rsplit_once(':') {
        if !line.is_empty() && line.chars().all(|c| c.is_ascii_digit() || c == '-') {
            path = before;
        }
    }
    Some(path.trim_end_matches('/'))
}

/// The broken links and paths of one document's text, as `line: what` lines.
fn broken_in(document: &Path, text: &str) -> Vec<String> {
    let dir = root().join(document).parent().expect("a document has a folder").to_path_buf();
    let mut broken = Vec::new();
    for (first_line, paragraph) in paragraphs(text) {
        let line_of = |offset: usize| first_line + paragraph[..offset].matches('\n').count();
        for (offset, target) in link_targets(&paragraph) {
            if let Some(path) = link_path(&target) {
                if !dir.join(path).exists() {
                    broken.push(format!("{}: link `{target}`: no {}", line_of(offset), path_shown(&dir.join(path))));
                }
            }
        }
        for (range, span) in code_spans(&paragraph) {
            if let Some(path) = repository_path(span) {
                if !root().join(path).exists() {
                    broken.push(format!("{}: path `{span}`: no {path} in the repository", line_of(range.start)));
                }
            }
        }
    }
    broken
}

/// A path as shown in a report: relative to the root when it is under it.
fn path_shown(path: &Path) -> String {
    let mut shown = PathBuf::new();
    for part in path.strip_prefix(root()).unwrap_or(path).components() {
        match part {
            std::path::Component::ParentDir if shown.file_name().is_some() => {
                shown.pop();
            }
            std::path::Component::CurDir => {}
            part => shown.push(part),
        }
    }
    shown.display().to_string()
}

#[test]
fn every_relative_link_and_repository_path_in_the_docs_exists() {
    let mut report = Vec::new();
    let documents = documents();
    for document in &documents {
        let text = match std::fs::read_to_string(root().join(document)) {
            Ok(text) => text,
            Err(e) => {
                report.push(format!("{}: cannot read it: {e}", document.display()));
                continue;
            }
        };
        report.extend(broken_in(document, &text).into_iter().map(|broken| format!("{}:{broken}", document.display())));
    }
    assert!(
        report.is_empty(),
        "{} broken links or paths in the documentation ({} documents checked):\n  {}\n",
        report.len(),
        documents.len(),
        report.join("\n  ")
    );
}

#[test]
fn the_checker_reads_markdown_as_it_is_written() {
    let text = "A [link](docs/a.md#part) and `src/b.rs:12`,\nthen `` `src/c.rs` `` and `rules/\nsplit.wat`.\n\n\
                ```sh\ncp `src/not_checked.rs` [x](not/checked.md)\n```\n\n\
                `[not](a/link.md)`, [web](https://example.org/x), [here](#anchor), `src/*.rs`, `src/<name>.rs`, `src/a.rs#L3`";
    let paragraphs = paragraphs(text);
    assert_eq!(paragraphs.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [1, 9]);

    let first = &paragraphs[0].1;
    assert_eq!(link_targets(first).into_iter().map(|(_, t)| t).collect::<Vec<_>>(), ["docs/a.md#part"]);
    assert_eq!(link_path("docs/a.md#part"), Some("docs/a.md"));
    let spans: Vec<&str> = code_spans(first).into_iter().map(|(_, span)| span).collect();
    assert_eq!(spans, ["src/b.rs:12", " `src/c.rs` ", "rules/\nsplit.wat"]);
    assert_eq!(spans.iter().map(|span| repository_path(span)).collect::<Vec<_>>(), [Some("src/b.rs"), None, None]);

    let last = &paragraphs[1].1;
    let targets: Vec<String> = link_targets(last).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["https://example.org/x", "#anchor"]);
    assert!(targets.iter().all(|target| link_path(target).is_none()));
    let paths: Vec<Option<&str>> = code_spans(last).into_iter().map(|(_, span)| repository_path(span)).collect();
    assert_eq!(paths, [None, None, None, Some("src/a.rs")]);
}
