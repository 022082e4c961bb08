//! One INSERT of an encoded batch, and what its failure means.

use bytes::Bytes;

use super::native;
use crate::encode::Unreadable;

/// How a failed insert should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Network trouble, overload, missing table or credentials: retrying can succeed.
    Transient(String),
    /// The server rejected the data itself; the same bytes will always fail.
    Deterministic { code: u32, message: String },
    /// The spooled rows cannot be read back (damage the record checksums did not catch): the
    /// insert is abandoned, so nothing of it is stored, and no retry can do better.
    Unreadable(Unreadable),
}

/// ClickHouse error codes that mean "this data can never be inserted".
/// 10 NOT_FOUND_COLUMN_IN_BLOCK, 16 NO_SUCH_COLUMN_IN_TABLE, 6 CANNOT_PARSE_TEXT, 26 CANNOT_PARSE_QUOTED_STRING, 27 CANNOT_PARSE_INPUT_ASSERTION_FAILED,
/// 32 ATTEMPT_TO_READ_AFTER_EOF, 33 CANNOT_READ_ALL_DATA, 38 CANNOT_PARSE_DATE,
/// 41 CANNOT_PARSE_DATETIME, 53 TYPE_MISMATCH, 69 ARGUMENT_OUT_OF_BOUND, 70 CANNOT_CONVERT_TYPE,
/// 72 CANNOT_PARSE_NUMBER, 117 INCORRECT_DATA, 131 TOO_LARGE_STRING_SIZE.
/// Everything else (including 40 CHECKSUM_DOESNT_MATCH, damage in transit) is retried.
pub(crate) const DETERMINISTIC_CODES: &[u32] =
    &[6, 10, 16, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 131];

/// Sends `data` as it is, in the format `sql` names, as one INSERT.
pub async fn insert(
    client: &clickhouse::Client,
    sql: &str,
    mut data: Bytes,
) -> Result<(), Failure> {
    let mut insert = client.insert_formatted_with(sql.to_owned());
    while !data.is_empty() {
        let piece = data.split_to(data.len().min(PIECE_BYTES));
        insert.send(piece).await.map_err(classify)?;
        // Compressing a piece takes a fraction of a millisecond; requests run in between.
        tokio::task::yield_now().await;
    }
    insert.end().await.map_err(classify)
}

/// Bytes of rows compressed and queued at a time: the client compresses what it is given
/// whole, and a segment of megabytes compressed at once would hold a second copy of it.
const PIECE_BYTES: usize = 256 * 1024;

/// Sends `rows`, RowBinary rows of `columns`, as Native blocks on `insert` (whose statement
/// names `FORMAT Native`).
pub(crate) async fn send_rows(
    insert: &mut clickhouse::insert_formatted::InsertFormatted,
    rows: &[u8],
    columns: &'static [(&'static str, &'static str)],
) -> Result<(), Failure> {
    for block in native::blocks(rows, columns, native::BLOCK_BYTES) {
        let block = block.map_err(Failure::Unreadable)?;
        insert.send(block.into()).await.map_err(classify)?;
        // Building and compressing a block takes a fraction of a millisecond; requests run in
        // between.
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Sends `rows` (RowBinary rows of `columns`) as one INSERT of `sql`, in Native blocks.
pub async fn insert_rows(
    client: &clickhouse::Client,
    sql: &str,
    rows: &[u8],
    columns: &'static [(&'static str, &'static str)],
) -> Result<(), Failure> {
    let mut insert = client.insert_formatted_with(sql.to_owned());
    send_rows(&mut insert, rows, columns).await?;
    insert.end().await.map_err(classify)
}

pub fn classify(e: clickhouse::error::Error) -> Failure {
    use clickhouse::error::Error;
    match &e {
        Error::BadResponse(msg) => match server_code(msg) {
            // On a cluster the node we talk to forwards rows to the shards: a failure on that
            // leg (a shard killed mid-insert reads as "Attempt to read after eof: while
            // receiving packet from <node>") is about the network, not about our bytes.
            Some(code) if DETERMINISTIC_CODES.contains(&code) && !from_another_node(msg) => {
                Failure::Deterministic {
                    code,
                    message: first_line(msg),
                }
            }
            _ => Failure::Transient(first_line(msg)),
        },
        _ => Failure::Transient(e.to_string()),
    }
}

/// Whether the error arose between ClickHouse nodes rather than in reading our request.
fn from_another_node(msg: &str) -> bool {
    msg.contains("while receiving packet from") || msg.contains("Received from ")
}

/// The `Code: N` of a ClickHouse error text (all versions start with it).
pub(crate) fn server_code(msg: &str) -> Option<u32> {
    let rest = &msg[msg.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn first_line(msg: &str) -> String {
    crate::model::text::truncate(msg.lines().next().unwrap_or(""), 500).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_old_and_new_servers() {
        assert_eq!(
            server_code("Code: 27, e.displayText() = DB::Exception: Cannot parse input"),
            Some(27)
        );
        assert_eq!(
            server_code("Code: 60. DB::Exception: Table x doesn't exist. (UNKNOWN_TABLE)"),
            Some(60)
        );
        assert_eq!(server_code("connection refused"), None);
    }

    #[test]
    fn classification() {
        use clickhouse::error::Error;
        let bad = Error::BadResponse(
            "Code: 33, e.displayText() = DB::Exception: Cannot read all data".into(),
        );
        assert!(matches!(
            classify(bad),
            Failure::Deterministic { code: 33, .. }
        ));
        let missing = Error::BadResponse(
            "Code: 60, e.displayText() = DB::Exception: Table default.x doesn't exist.".into(),
        );
        assert!(matches!(classify(missing), Failure::Transient(_)));
        assert!(matches!(classify(Error::TimedOut), Failure::Transient(_)));
        // A shard killed while the node we talk to forwarded rows to it.
        let shard_died = Error::BadResponse(
            "Code: 32, e.displayText() = DB::Exception: Attempt to read after eof: while \
             receiving packet from 127.0.0.1:43085: Insertion status: Wrote 1 blocks"
                .into(),
        );
        assert!(matches!(classify(shard_died), Failure::Transient(_)));
    }
}
