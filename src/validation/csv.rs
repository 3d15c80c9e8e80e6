//! Streaming CSV checks (csv-core's push parser, record by record, memory bounded by the
//! longest record): a header row as configured, then the same number of fields on every row.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

/// Longest record (fields' bytes) kept while parsing; a file without line breaks is refused
/// rather than buffered.
const MAX_RECORD: usize = 1024 * 1024;

/// How the header must match the configured columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// The header is exactly these names, in this order.
    Exact,
    /// The header holds at least these names, in any order.
    Subset,
}

/// A CSV layout to check against.
#[derive(Debug, Clone)]
pub struct CsvSpec {
    /// Column names the header must have.
    pub header: Vec<String>,
    /// Field delimiter.
    pub delimiter: u8,
    /// How the header is compared.
    pub columns: Columns,
}

/// One file being checked.
pub(super) struct CsvCheck {
    spec: CsvSpec,
    rdr: Reader,
    out: Vec<u8>,
    outlen: usize,
    ends: Vec<usize>,
    endlen: usize,
    /// Line the current record started on (`None`: not known until its first byte is seen).
    record_line: Option<u64>,
    /// The last record ended on a CR: a LF after it still belongs to that line break.
    after_cr: bool,
    /// Fields per row, once the header is read.
    width: Option<usize>,
    /// The input could not be parsed further (a record over the limit).
    stopped: bool,
    pub(super) errors: Vec<String>,
    max_errors: usize,
    /// The file's first bytes, until there are enough to tell whether they are a UTF-8 BOM
    /// (csv-core strips one only when it arrives whole); `None` once decided.
    head: Option<Vec<u8>>,
}

impl CsvCheck {
    pub(super) fn new(spec: &CsvSpec, max_errors: usize) -> Self {
        Self {
            rdr: ReaderBuilder::new().delimiter(spec.delimiter).build(),
            spec: spec.clone(),
            out: vec![0; 4096],
            outlen: 0,
            ends: vec![0; 64],
            endlen: 0,
            record_line: Some(1),
            after_cr: false,
            width: None,
            stopped: false,
            errors: Vec::new(),
            max_errors,
            head: Some(Vec::new()),
        }
    }

    /// True once enough errors are known: the rest of the file need not be parsed.
    pub(super) fn full(&self) -> bool {
        self.stopped || self.errors.len() >= self.max_errors
    }

    /// Parses `input`; an empty slice ends the file.
    pub(super) fn feed(&mut self, input: &[u8]) {
        const BOM: &[u8] = b"\xef\xbb\xbf";
        let Some(mut head) = self.head.take() else {
            return self.parse(input);
        };
        head.extend_from_slice(input);
        if head.len() < BOM.len() && !input.is_empty() && BOM.starts_with(&head) {
            self.head = Some(head);
            return;
        }
        let body = head.strip_prefix(BOM).unwrap_or(&head);
        if !body.is_empty() {
            self.parse(body);
        }
        if input.is_empty() {
            self.parse(&[]);
        }
    }

    fn parse(&mut self, mut input: &[u8]) {
        let at_end = input.is_empty();
        while !self.full() {
            if self.record_line.is_none()
                && let Some(&first) = input.first()
            {
                let crlf = self.after_cr && first == b'\n';
                self.record_line = Some(self.rdr.line() + u64::from(crlf));
            }
            let (res, nin, nout, nend) = self.rdr.read_record(
                input,
                &mut self.out[self.outlen..],
                &mut self.ends[self.endlen..],
            );
            let last = nin.checked_sub(1).and_then(|i| input.get(i)).copied();
            input = &input[nin..];
            self.outlen += nout;
            self.endlen += nend;
            match res {
                ReadRecordResult::InputEmpty => {
                    if !at_end {
                        return;
                    }
                }
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD {
                        self.error(format!(
                            "line {}: record longer than {} KiB",
                            self.line(),
                            MAX_RECORD / 1024
                        ));
                        self.stopped = true;
                        return;
                    }
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    self.record();
                    self.outlen = 0;
                    self.endlen = 0;
                    self.after_cr = last == Some(b'\r');
                    self.record_line = None;
                }
                ReadRecordResult::End => {
                    if self.width.is_none() && self.errors.is_empty() {
                        self.error("empty file: expected a header row".into());
                    }
                    return;
                }
            }
        }
    }

    fn line(&self) -> u64 {
        self.record_line.unwrap_or_else(|| self.rdr.line())
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < self.max_errors {
            self.errors.push(e);
        }
    }

    fn record(&mut self) {
        let ends = &self.ends[..self.endlen];
        // A blank line is one empty field: skipped, as spreadsheet exports end with one.
        if ends == [0] {
            return;
        }
        let line = self.line();
        let mut start = 0;
        let mut fields = Vec::with_capacity(ends.len());
        for &end in ends {
            fields.push(&self.out[start..end]);
            start = end;
        }
        let Some(width) = self.width else {
            let names: Result<Vec<&str>, _> = fields
                .iter()
                .map(|f| std::str::from_utf8(f).map(str::trim))
                .collect();
            let err = match names {
                Err(_) => Some("the header is not valid UTF-8".to_string()),
                Ok(names) => self.header_error(&names),
            };
            self.width = Some(fields.len());
            if let Some(e) = err {
                self.error(format!("line {line}: {e}"));
            }
            return;
        };
        if fields.len() != width {
            let e = format!(
                "line {line}: expected {width} fields, found {}",
                fields.len()
            );
            self.error(e);
        } else if fields.iter().any(|f| std::str::from_utf8(f).is_err()) {
            self.error(format!("line {line}: not valid UTF-8"));
        }
    }

    fn header_error(&self, names: &[&str]) -> Option<String> {
        let want = &self.spec.header;
        match self.spec.columns {
            Columns::Exact if names.iter().copied().ne(want.iter().map(String::as_str)) => {
                Some(format!(
                    "header is {:?}, expected exactly {:?}",
                    names.join(","),
                    want.join(",")
                ))
            }
            Columns::Subset => {
                let missing: Vec<&str> = want
                    .iter()
                    .map(String::as_str)
                    .filter(|w| !names.contains(w))
                    .collect();
                (!missing.is_empty()).then(|| format!("header lacks {:?}", missing.join(",")))
            }
            Columns::Exact => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &CsvSpec, text: &[u8], chunk: usize) -> Vec<String> {
        let mut c = CsvCheck::new(spec, 10);
        for part in text.chunks(chunk.max(1)) {
            c.feed(part);
        }
        c.feed(&[]);
        c.errors
    }

    fn spec(columns: Columns) -> CsvSpec {
        CsvSpec {
            header: vec!["order_id".into(), "sku".into(), "qty".into()],
            delimiter: b',',
            columns,
        }
    }

    #[test]
    fn a_good_file_passes_in_any_chunking() {
        let text = b"\xef\xbb\xbforder_id,sku,qty\r\n1,\"A,1\",2\r\n2,B,3\r\n\r\n";
        for chunk in [1, 2, 7, 1000] {
            assert!(
                check(&spec(Columns::Exact), text, chunk).is_empty(),
                "{chunk}"
            );
        }
    }

    #[test]
    fn errors_name_their_line() {
        let text = b"order_id,sku,qty\n1,A,2\n2,B\n3,C,4,5\n";
        assert_eq!(
            check(&spec(Columns::Exact), text, 3),
            [
                "line 3: expected 3 fields, found 2",
                "line 4: expected 3 fields, found 4"
            ]
        );
        let bad_header = check(&spec(Columns::Exact), b"id,sku,qty\n1,2,3\n", 5);
        assert_eq!(
            bad_header,
            ["line 1: header is \"id,sku,qty\", expected exactly \"order_id,sku,qty\""]
        );
        assert_eq!(
            check(&spec(Columns::Subset), b"qty,x,order_id\n1,2,3\n", 4),
            ["line 1: header lacks \"sku\""]
        );
        assert!(check(&spec(Columns::Subset), b"qty,sku,x,order_id\n1,2,3,4\n", 4).is_empty());
        assert_eq!(
            check(&spec(Columns::Exact), b"", 1),
            ["empty file: expected a header row"]
        );
    }

    #[test]
    fn crlf_files_count_lines_the_same() {
        let text = b"order_id,sku,qty\r\n1,A,2\r\n2,B\r\n\"3\r\nx\",C\r\n";
        for chunk in [1, 2, 5, 100] {
            assert_eq!(
                check(&spec(Columns::Exact), text, chunk),
                [
                    "line 3: expected 3 fields, found 2",
                    "line 4: expected 3 fields, found 2"
                ],
                "{chunk}"
            );
        }
    }

    #[test]
    fn a_file_without_line_breaks_is_cut_off() {
        let mut text = b"order_id,sku,qty\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 * MAX_RECORD));
        let errs = check(&spec(Columns::Exact), &text, 64 * 1024);
        assert_eq!(errs, ["line 2: record longer than 1024 KiB"]);
    }
}
