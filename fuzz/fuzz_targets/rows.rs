//! Any bytes as a spool segment's rows, of every row format: what the deliverer makes of them
//! (the daily rollup's rows, the Native blocks) must not panic, and the blocks hold no more than
//! the rows' bytes, an 8-byte offset per array value and a header per block (no amplification).
#![no_main]

use glimpse::deliver::{native, rollup};
use glimpse::encode::columns_of;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in 1..=4 {
        let _ = rollup::daily(data, format);
        let columns = columns_of(format);
        let header: usize = columns.iter().map(|(n, t)| n.len() + t.len() + 2).sum::<usize>() + 20;
        let (mut bytes, mut blocks) = (0, 0);
        for block in native::blocks(data, columns, 4096) {
            match block {
                Ok(b) => {
                    bytes += b.len();
                    blocks += 1;
                }
                Err(_) => break,
            }
        }
        // An array value's count takes at least one byte of the rows and becomes 8.
        assert!(bytes <= 8 * data.len() + blocks * header, "{bytes} from {}", data.len());
    }
});
