//! The guest's memory as the host functions see it: pointers and lengths from the guest
//! checked against its bounds before any byte is read or written.

use wasmtime::Caller;

use super::codes::ERR_MEMORY;
use super::state::HostState;

/// The guest's memory and our state, borrowed together.
pub(super) fn memory_and_state<'a>(caller: &'a mut Caller<'_, HostState>) -> Option<(&'a mut [u8], &'a mut HostState)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

pub(super) fn guest_range(memory: &[u8], ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = u32::try_from(ptr).ok()? as usize;
    let len = u32::try_from(len).ok()? as usize;
    let end = start.checked_add(len)?;
    (end <= memory.len()).then_some(start..end)
}

pub(super) fn guest_str(memory: &[u8], ptr: i32, len: i32) -> Option<&str> {
    std::str::from_utf8(&memory[guest_range(memory, ptr, len)?]).ok()
}

/// Copies `min(len, dst.len())` bytes of `value` to the guest; returns the full length.
pub(super) fn copy_out(memory: &mut [u8], value: &[u8], dst_ptr: i32, dst_len: i32) -> i32 {
    let Some(dst) = guest_range(memory, dst_ptr, dst_len) else { return ERR_MEMORY };
    let n = value.len().min(dst.len());
    memory[dst.start..dst.start + n].copy_from_slice(&value[..n]);
    i32::try_from(value.len()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ranges_are_bounds_checked() {
        let memory = [0u8; 16];
        assert_eq!(guest_range(&memory, 0, 16), Some(0..16));
        assert_eq!(guest_range(&memory, 8, 9), None);
        assert_eq!(guest_range(&memory, -1, 1), None);
        assert_eq!(guest_range(&memory, 1, -1), None);
        assert_eq!(guest_range(&memory, i32::MAX, i32::MAX), None);
    }
}
