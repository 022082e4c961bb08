//! Rows as the deliverer sends them, for checks that a server reads them back: RowBinary rows
//! of every column list the collector inserts, with values of every awkward kind.

/// A column list: (name, ClickHouse type).
pub type Columns = &'static [(&'static str, &'static str)];

/// RowBinary rows of `columns` for the Native checks: texts of every length class of the length
/// prefix (1, 2 and 3 bytes), multi-byte UTF-8, bytes that are not UTF-8 and empty ones; arrays
/// empty and long.
pub fn varied_rows(columns: &[(&str, &str)], n: usize) -> Vec<u8> {
    use glimpse::encode::put_varint;
    let text = |i: usize| -> Vec<u8> {
        match i % 6 {
            0 => Vec::new(),
            1 => format!("/page/{i}").into_bytes(),
            2 => "é😀".repeat(i % 40).into_bytes(),
            3 => vec![b'x'; 200 + i % 50],
            // A few long enough for a 3-byte prefix.
            4 if i % 300 == 4 => vec![b'y'; 20_000 + i],
            4 => vec![b'z'; 130],
            _ => vec![0xff, 0x00, 0xfe],
        }
    };
    let value = |out: &mut Vec<u8>, ty: &str, i: usize| match ty {
        "UInt8" | "Int8" => out.push(i as u8),
        "Date" => out.extend_from_slice(&(19_000 + i as u16).to_le_bytes()),
        "UInt32" | "DateTime" => out.extend_from_slice(&(1_700_000_000 + i as u32).to_le_bytes()),
        "UInt64" | "Int64" => out.extend_from_slice(&(u64::MAX - i as u64).to_le_bytes()),
        "String" => {
            put_varint(out, text(i).len() as u64);
            out.extend_from_slice(&text(i));
        }
        _ => panic!("{ty}"),
    };
    let mut rows = Vec::new();
    for i in 0..n {
        for (c, (_, ty)) in columns.iter().enumerate() {
            match ty.strip_prefix("Array(").and_then(|t| t.strip_suffix(')')) {
                Some(item) => {
                    let len = (i + c) % 5;
                    put_varint(&mut rows, len as u64);
                    for k in 0..len {
                        value(&mut rows, item, i + k);
                    }
                }
                None => value(&mut rows, ty, i + c),
            }
        }
    }
    rows
}

/// Every column list the deliverer sends: each row format of the spool, and the daily rollup's.
pub fn insert_column_lists() -> Vec<(String, Columns)> {
    (1..=4)
        .map(|format| {
            (
                format!("format {format}"),
                glimpse::encode::columns_of(format),
            )
        })
        .chain([("daily rollup".to_owned(), glimpse::deliver::rollup::COLUMNS)])
        .collect()
}

/// `columns` as SQL: the names joined for an INSERT or SELECT, and the definitions for a
/// CREATE TABLE.
pub fn column_sql(columns: &[(&str, &str)]) -> (String, String) {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let defs: Vec<String> = columns.iter().map(|(n, t)| format!("{n} {t}")).collect();
    (names.join(", "), defs.join(", "))
}
