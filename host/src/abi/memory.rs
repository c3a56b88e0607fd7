//! Moving bytes across the guest boundary: reading guest memory, handing the guest memory it owns
//! (through its exported allocator), and the proxy-wasm header-map encoding.

use wasmtime::{AsContext, Caller, Extern, Instance, Memory, Store, TypedFunc};

use super::state::HostState;
use super::types::Status;

/// A header or trailer map: lower-case names, raw byte values, in order.
pub type HeaderMap = Vec<(Vec<u8>, Vec<u8>)>;

/// The exports that can allocate guest memory for the host, in order of preference.
const ALLOCATOR_EXPORTS: [&str; 2] = ["proxy_on_memory_allocate", "malloc"];

/// The guest's memory and allocator.
#[derive(Clone)]
pub struct Guest {
    memory: Memory,
    alloc: Option<TypedFunc<i32, i32>>,
}

impl Guest {
    /// The guest's memory and allocator: those the VM found when it was made
    /// ([`HostState::guest`]), else looked up in the caller's exports ([`Guest::find`]).
    pub fn of(caller: &mut Caller<'_, HostState>) -> Result<Self, Status> {
        match &caller.data().guest {
            Some(guest) => Ok(guest.clone()),
            None => Self::find(caller),
        }
    }

    /// The memory and allocator among the exports of `instance` (as [`Guest::find`] finds
    /// them), or `None` without a memory.
    pub fn of_instance<T>(instance: &Instance, store: &mut Store<T>) -> Option<Self> {
        let memory = instance.get_memory(&mut *store, "memory")?;
        let alloc = ALLOCATOR_EXPORTS
            .into_iter()
            .find_map(|name| instance.get_typed_func::<i32, i32>(&mut *store, name).ok());
        Some(Self { memory, alloc })
    }

    /// Finds `memory` and `proxy_on_memory_allocate` (or `malloc`) among the guest's exports.
    pub fn find<T>(caller: &mut Caller<'_, T>) -> Result<Self, Status> {
        let memory = match caller.get_export("memory") {
            Some(Extern::Memory(m)) => m,
            _ => return Err(Status::InternalFailure),
        };
        let alloc = ALLOCATOR_EXPORTS.into_iter().find_map(|name| {
            let f = caller.get_export(name).and_then(Extern::into_func)?;
            f.typed::<i32, i32>(&*caller).ok()
        });
        Ok(Self { memory, alloc })
    }

    /// Size of the guest's linear memory in bytes.
    pub fn memory_bytes(&self, store: impl AsContext) -> usize {
        self.memory.data_size(store)
    }

    /// Copies `len` bytes at `ptr` out of guest memory.
    pub fn read<T>(&self, caller: &Caller<'_, T>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
        let (start, len) = (ptr as u32 as usize, len as u32 as usize);
        self.memory
            .data(caller)
            .get(start..start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?)
            .map(<[u8]>::to_vec)
            .ok_or(Status::InvalidMemoryAccess)
    }

    /// Reads a UTF-8 string (names, keys); invalid UTF-8 is a bad argument.
    pub fn read_str<T>(
        &self,
        caller: &Caller<'_, T>,
        ptr: i32,
        len: i32,
    ) -> Result<String, Status> {
        String::from_utf8(self.read(caller, ptr, len)?).map_err(|_| Status::BadArgument)
    }

    /// Writes a little-endian `u32` at `ptr`.
    pub fn write_u32<T>(
        &self,
        caller: &mut Caller<'_, T>,
        ptr: i32,
        value: u32,
    ) -> Result<(), Status> {
        self.write_bytes(caller, ptr, &value.to_le_bytes())
    }

    /// Writes a little-endian `u64` at `ptr`.
    pub fn write_u64<T>(
        &self,
        caller: &mut Caller<'_, T>,
        ptr: i32,
        value: u64,
    ) -> Result<(), Status> {
        self.write_bytes(caller, ptr, &value.to_le_bytes())
    }

    /// Copies `bytes` into guest memory at `ptr`.
    pub fn write_bytes<T>(
        &self,
        caller: &mut Caller<'_, T>,
        ptr: i32,
        bytes: &[u8],
    ) -> Result<(), Status> {
        let start = ptr as u32 as usize;
        self.memory
            .data_mut(caller)
            .get_mut(start..start + bytes.len())
            .ok_or(Status::InvalidMemoryAccess)?
            .copy_from_slice(bytes);
        Ok(())
    }

    /// Hands `bytes` to the guest: allocates with the guest's allocator, copies, and stores the
    /// pointer and length at `ptr_out` / `len_out`. Empty data is returned as a null pointer, as
    /// Envoy does. A trap inside the allocator (e.g. out of memory) is returned as `Err(trap)`.
    pub fn give<T>(
        &self,
        caller: &mut Caller<'_, T>,
        bytes: &[u8],
        ptr_out: i32,
        len_out: i32,
    ) -> wasmtime::Result<Result<(), Status>> {
        let mut ptr = 0u32;
        if !bytes.is_empty() {
            let Some(alloc) = &self.alloc else {
                return Ok(Err(Status::InternalFailure));
            };
            let Ok(size) = i32::try_from(bytes.len()) else {
                return Ok(Err(Status::BadArgument));
            };
            ptr = alloc.call(&mut *caller, size)? as u32;
            if ptr == 0 {
                return Ok(Err(Status::InternalFailure));
            }
            if let Err(status) = self.write_bytes(caller, ptr as i32, bytes) {
                return Ok(Err(status));
            }
        }
        Ok(self
            .write_u32(caller, ptr_out, ptr)
            .and_then(|()| self.write_u32(caller, len_out, bytes.len() as u32)))
    }
}

/// Encodes a header map: `u32` count, `(u32 name_len, u32 value_len)` per pair, then each name
/// and value followed by a NUL byte.
pub fn encode_map(map: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + map
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Decodes a header map written by the guest; names are lower-cased like Envoy's header maps.
pub fn decode_map(bytes: &[u8]) -> Result<HeaderMap, Status> {
    if bytes.len() <= 1 {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, Status> {
        let raw = bytes.get(at..at + 4).ok_or(Status::BadArgument)?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
    };
    let count = word(0)?;
    let mut data = 4usize
        .checked_add(count.checked_mul(8).ok_or(Status::BadArgument)?)
        .ok_or(Status::BadArgument)?;
    let mut map = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let (klen, vlen) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let key = bytes.get(data..data + klen).ok_or(Status::BadArgument)?;
        data += klen + 1;
        let value = bytes.get(data..data + vlen).ok_or(Status::BadArgument)?;
        data += vlen + 1;
        map.push((key.to_ascii_lowercase(), value.to_vec()));
    }
    Ok(map)
}

/// Operations on a [`HeaderMap`] with Envoy's semantics.
pub trait HeaderMapExt {
    /// The first value of `name` (case-insensitive).
    fn first(&self, name: &[u8]) -> Option<&[u8]>;
    /// Sets `name` to `value`: the first occurrence is replaced and later ones removed, or the
    /// pair is appended.
    fn replace(&mut self, name: &[u8], value: &[u8]);
    /// Removes every occurrence of `name`.
    fn remove_all(&mut self, name: &[u8]);
}

impl HeaderMapExt for HeaderMap {
    fn first(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn replace(&mut self, name: &[u8], value: &[u8]) {
        let name = name.to_ascii_lowercase();
        match self.iter().position(|(k, _)| *k == name) {
            Some(i) => {
                self[i].1 = value.to_vec();
                let mut seen = 0;
                self.retain(|(k, _)| {
                    if *k != name {
                        return true;
                    }
                    seen += 1;
                    seen == 1
                });
            }
            None => self.push((name, value.to_vec())),
        }
    }

    fn remove_all(&mut self, name: &[u8]) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trips_with_binary_values() {
        let map: HeaderMap = vec![
            (b":path".to_vec(), b"/v1/messages".to_vec()),
            (b"x-bin".to_vec(), vec![0xff, 0xfe, b'a']),
            (b"empty".to_vec(), Vec::new()),
        ];
        assert_eq!(decode_map(&encode_map(&map)).unwrap(), map);
        assert_eq!(decode_map(&[]).unwrap(), HeaderMap::new());
        assert_eq!(decode_map(&[0]).unwrap(), HeaderMap::new());
    }

    #[test]
    fn truncated_map_is_a_bad_argument() {
        let encoded = encode_map(&[(b"a".to_vec(), b"bc".to_vec())]);
        assert_eq!(
            decode_map(&encoded[..encoded.len() - 3]),
            Err(Status::BadArgument)
        );
        assert_eq!(decode_map(&[9, 0, 0, 0, 1]), Err(Status::BadArgument));
    }

    #[test]
    fn replace_keeps_one_value() {
        let mut map: HeaderMap = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"a".to_vec(), b"3".to_vec()),
        ];
        map.replace(b"A", b"9");
        assert_eq!(
            map,
            vec![
                (b"a".to_vec(), b"9".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        map.remove_all(b"B");
        assert_eq!(map.first(b"a"), Some(&b"9"[..]));
        assert_eq!(map.first(b"b"), None);
    }
}
