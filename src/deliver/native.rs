//! Rows as ClickHouse's Native format: the spool's RowBinary rows turned into columns as they
//! are sent.
//!
//! The server reads a Native block a column at a time, with bulk copies, where it parses
//! RowBinary a value at a time through each column's type: on 18.16 that was about half of
//! what it spent per row before any view ran. The spool keeps RowBinary, which one request's
//! rows are appended in without knowing the others; only the insert is columnar.
//!
//! A block is the column count and row count (LEB128), then each column's name, type and data:
//! fixed-width values packed little-endian, strings as in RowBinary (length, bytes), and an
//! array as the running end offsets of its rows (UInt64) followed by all of its elements. This
//! is the layout without the block header of the native TCP protocol, which is what every
//! server version reads over HTTP. The server joins the blocks of one insert into one before
//! it writes them (`min_insert_block_size_rows`), so blocks of [`BLOCK_BYTES`] cost no more parts
//! than one block of the whole segment would, and the collector never holds a second copy of
//! the segment.

use crate::encode::{Layout, Reader, Unreadable, layout, put_str, put_varint};

/// Bytes of rows a block takes: below the allocator's mmap threshold (256 KiB, fixed by the
/// binary), so that a block's buffers come from the heap, reused, instead of pages mapped and
/// zeroed afresh for each block.
pub const BLOCK_BYTES: usize = 128 * 1024;

/// One column of the block being built.
struct Column {
    name: &'static str,
    ty: &'static str,
    layout: Layout,
    /// The values (an array's elements).
    data: Vec<u8>,
    /// An array's end offsets, UInt64 each.
    offsets: Vec<u8>,
    /// An array's elements so far in this block.
    items: u64,
}

/// The Native blocks of `data`, RowBinary rows of `columns` (name, ClickHouse type), each
/// block holding whole rows and about `block_bytes` of them. The same rows always give the
/// same blocks, so a retried insert is recognised as one where the server deduplicates by
/// content.
///
/// Panics if a type is not one the insert tables use: the column lists are constants.
pub fn blocks<'a>(
    data: &'a [u8],
    columns: &'static [(&'static str, &'static str)],
    block_bytes: usize,
) -> Blocks<'a> {
    let columns = columns
        .iter()
        .map(|&(name, ty)| Column {
            name,
            ty,
            layout: layout(ty).unwrap_or_else(|| panic!("no Native layout for {ty}")),
            data: Vec::new(),
            offsets: Vec::new(),
            items: 0,
        })
        .collect();
    Blocks {
        data,
        at: 0,
        row: 0,
        columns,
        block_bytes,
    }
}

pub struct Blocks<'a> {
    data: &'a [u8],
    at: usize,
    /// Rows read so far, for the error of an unreadable one.
    row: usize,
    columns: Vec<Column>,
    block_bytes: usize,
}

impl Blocks<'_> {
    /// Moves the row at `self.at` into the columns; None when it cannot be read.
    fn row(&mut self) -> Option<()> {
        let mut r = Reader::new(self.data, self.at);
        for c in &mut self.columns {
            match c.layout {
                // Fixed-width values and texts are laid out in a column as in a row.
                Layout::One(item) => c.data.extend_from_slice(r.item(item)?),
                Layout::Array(item) => {
                    let n = r.varint()?;
                    // A damaged count can be anything; the elements it claims must be there.
                    c.items = c.items.checked_add(n)?;
                    c.offsets.extend_from_slice(&c.items.to_le_bytes());
                    for _ in 0..n {
                        c.data.extend_from_slice(r.item(item)?);
                    }
                }
            }
        }
        self.at = r.at;
        Some(())
    }

    /// Writes the block of the rows moved into the columns, and empties them.
    fn write(&mut self, rows: usize) -> Vec<u8> {
        let size: usize = self
            .columns
            .iter()
            .map(|c| c.name.len() + c.ty.len() + c.data.len() + c.offsets.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + 20);
        put_varint(&mut out, self.columns.len() as u64);
        put_varint(&mut out, rows as u64);
        for c in &mut self.columns {
            put_str(&mut out, c.name);
            put_str(&mut out, c.ty);
            out.extend_from_slice(&c.offsets);
            out.extend_from_slice(&c.data);
            c.data.clear();
            c.offsets.clear();
            c.items = 0;
        }
        out
    }

    /// Empties the columns.
    fn clear(&mut self) {
        for c in &mut self.columns {
            c.data.clear();
            c.offsets.clear();
            c.items = 0;
        }
    }
}

impl Iterator for Blocks<'_> {
    type Item = Result<Vec<u8>, Unreadable>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.at;
        let mut rows = 0;
        while self.at < self.data.len() && self.at - start < self.block_bytes {
            if self.row().is_none() {
                let at = self.at;
                // Nothing more is read: the rows after a damaged one cannot be found.
                self.at = self.data.len();
                self.clear();
                return Some(Err(Unreadable { row: self.row, at }));
            }
            self.row += 1;
            rows += 1;
        }
        (rows > 0).then(|| Ok(self.write(rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[(&str, &str)] = &[
        ("t", "DateTime"),
        ("s", "String"),
        ("d", "Date"),
        ("n", "Int8"),
        ("k", "Array(String)"),
        ("v", "Array(UInt64)"),
    ];

    fn row(out: &mut Vec<u8>, t: u32, s: &str, keys: &[&str], vals: &[u64]) {
        out.extend_from_slice(&t.to_le_bytes());
        put_str(out, s);
        out.extend_from_slice(&7u16.to_le_bytes());
        out.push(0xff);
        put_varint(out, keys.len() as u64);
        for k in keys {
            put_str(out, k);
        }
        put_varint(out, vals.len() as u64);
        for v in vals {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    #[test]
    fn rows_become_columns() {
        let mut data = Vec::new();
        row(&mut data, 1, "a", &["x", "yy"], &[5]);
        row(&mut data, 2, &"b".repeat(200), &[], &[6, 7]);
        let blocks: Vec<_> = blocks(&data, COLUMNS, 1 << 20)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(blocks.len(), 1);
        let mut want = vec![6, 2];
        let col = |want: &mut Vec<u8>, name: &str, ty: &str| {
            put_str(want, name);
            put_str(want, ty);
        };
        col(&mut want, "t", "DateTime");
        want.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        col(&mut want, "s", "String");
        want.extend_from_slice(&[1, b'a', 200, 1]);
        want.extend_from_slice("b".repeat(200).as_bytes());
        col(&mut want, "d", "Date");
        want.extend_from_slice(&[7, 0, 7, 0]);
        col(&mut want, "n", "Int8");
        want.extend_from_slice(&[0xff, 0xff]);
        col(&mut want, "k", "Array(String)");
        for end in [2u64, 2] {
            want.extend_from_slice(&end.to_le_bytes());
        }
        want.extend_from_slice(&[1, b'x', 2, b'y', b'y']);
        col(&mut want, "v", "Array(UInt64)");
        for n in [1u64, 3, 5, 6, 7] {
            want.extend_from_slice(&n.to_le_bytes());
        }
        assert_eq!(blocks[0], want);
    }

    #[test]
    fn blocks_hold_whole_rows_and_restart_their_offsets() {
        let mut data = Vec::new();
        for i in 0..1000u32 {
            row(&mut data, i, "site", &["k"], &[u64::from(i)]);
        }
        let blocks: Vec<_> = blocks(&data, COLUMNS, 4096)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(blocks.len() > 5, "{}", blocks.len());
        let mut rows = 0;
        for b in &blocks {
            assert_eq!(b[0], 6);
            let mut r = Reader::new(b, 1);
            let n = r.varint().unwrap();
            rows += n;
            // A block's first array offset counts from its own first row.
            let k = b
                .windows(14)
                .position(|w| w == b"\x0dArray(String)")
                .unwrap()
                + 14;
            assert_eq!(&b[k..k + 8], &1u64.to_le_bytes());
        }
        assert_eq!(rows, 1000);
        // The same rows, the same blocks.
        let again: Vec<_> = super::blocks(&data, COLUMNS, 4096)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(again, blocks);
    }

    #[test]
    fn a_damaged_row_ends_the_blocks() {
        let mut data = Vec::new();
        row(&mut data, 1, "a", &[], &[]);
        let whole = data.len();
        row(&mut data, 2, "b", &["k"], &[1]);
        data.truncate(data.len() - 3);
        let mut b = blocks(&data, COLUMNS, 1 << 20);
        assert_eq!(b.next(), Some(Err(Unreadable { row: 1, at: whole })));
        assert_eq!(b.next(), None);
        // An array count beyond any data, a length beyond the data, and a varint that never
        // ends.
        let mut huge = Vec::new();
        row(&mut huge, 1, "a", &["k"], &[]);
        let first = huge.len();
        huge.extend_from_slice(&1u32.to_le_bytes());
        put_str(&mut huge, "a");
        huge.extend_from_slice(&[7, 0, 0]);
        put_varint(&mut huge, u64::MAX);
        assert_eq!(
            blocks(&huge, COLUMNS, 1 << 20).next(),
            Some(Err(Unreadable { row: 1, at: first }))
        );
        let mut bad = Vec::new();
        bad.extend_from_slice(&1u32.to_le_bytes());
        bad.extend_from_slice(&[0xff; 12]);
        assert!(matches!(
            blocks(&bad, COLUMNS, 1 << 20).next(),
            Some(Err(_))
        ));
    }

    #[test]
    fn every_insert_column_has_a_layout() {
        for (_, ty) in crate::encode::COLUMNS
            .iter()
            .chain(crate::deliver::rollup::COLUMNS)
        {
            assert!(layout(ty).is_some(), "{ty}");
        }
    }
}
