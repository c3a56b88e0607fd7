//! The host functions: every `env.proxy_*` import of ABI 0.2.1 and the WASI preview 1 calls a
//! Rust `wasm32-wasip1` module needs, answering with the statuses Envoy 1.40 answers with.
//!
//! The Rust SDK panics (and so traps) on any status it does not expect, so fidelity here is
//! what keeps the same `.wasm` alive in both hosts. Nothing a guest asks for is carried out
//! re-entrantly: local responses, stream resumption and `http_call`s are recorded in
//! [`HostState`] and acted on by the host once the guest call returns, as Envoy does.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use wasmtime::{Caller, ExternType, Linker, Module, Val, ValType};

use super::memory::{Guest, HeaderMap, HeaderMapExt, decode_map, encode_map};
use super::state::{HostState, HttpCallRequest, LocalResponse, Phase, StreamState};
use super::types::{BufferType, MapType, MetricType, Status, StreamType, log_level};

type Ctx<'a> = Caller<'a, HostState>;

/// WASI errno values used here.
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
}

/// Turns a host function's outcome into its `i32` status.
fn status(result: Result<(), Status>) -> i32 {
    match result {
        Ok(()) => Status::Ok.code(),
        Err(s) => s.code(),
    }
}

/// Imports this host does not offer, and what they answer, as Envoy does or as the SDK expects
/// of a host without them: gRPC to an unknown cluster is PARSE_FAILURE (an error, not a panic,
/// in the SDK), shared queues and foreign functions are absent, and a plugin has no files.
const CONSTANT_ANSWERS: &[(&str, i32)] = &[
    ("proxy_grpc_call", Status::ParseFailure as i32),
    ("proxy_grpc_stream", Status::ParseFailure as i32),
    ("proxy_grpc_send", Status::NotFound as i32),
    ("proxy_grpc_cancel", Status::NotFound as i32),
    ("proxy_grpc_close", Status::NotFound as i32),
    ("proxy_register_shared_queue", Status::Unimplemented as i32),
    ("proxy_resolve_shared_queue", Status::NotFound as i32),
    ("proxy_enqueue_shared_queue", Status::NotFound as i32),
    ("proxy_dequeue_shared_queue", Status::NotFound as i32),
    ("proxy_call_foreign_function", Status::NotFound as i32),
    ("fd_close", errno::BADF),
    ("fd_fdstat_get", errno::BADF),
    ("fd_read", errno::BADF),
    ("fd_seek", errno::BADF),
];

/// Links every import of `module`: the ABI and WASI functions below, the constant answers
/// above, and for anything else a function that answers "unimplemented" instead of trapping.
pub fn link(linker: &mut Linker<HostState>, module: &Module) -> Result<()> {
    // Constant answers first, then the real functions shadow them where they exist.
    linker.allow_shadowing(true);
    for import in module.imports() {
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let (module_name, name) = (import.module().to_string(), import.name().to_string());
        let code = CONSTANT_ANSWERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, code)| *code)
            .unwrap_or(if module_name == "env" {
                Status::Unimplemented.code()
            } else {
                errno::NOSYS
            });
        linker.func_new(&module_name, &name, ty.clone(), move |_, _, results| {
            for (slot, ty) in results.iter_mut().zip(ty.results()) {
                *slot = match ty {
                    ValType::I32 => Val::I32(code),
                    ValType::I64 => Val::I64(i64::from(code)),
                    ValType::F32 => Val::F32(0),
                    ValType::F64 => Val::F64(0),
                    _ => Val::I32(0),
                };
            }
            Ok(())
        })?;
    }
    link_env(linker).context("linking env.proxy_*")?;
    link_wasi(linker).context("linking WASI")?;
    Ok(())
}

fn stream_map(state: &mut HostState, map: MapType) -> Result<&mut HeaderMap, Status> {
    if matches!(
        map,
        MapType::HttpCallResponseHeaders | MapType::HttpCallResponseTrailers
    ) {
        let response = state
            .http_call_response
            .as_mut()
            .ok_or(Status::BadArgument)?;
        return Ok(match map {
            MapType::HttpCallResponseHeaders => &mut response.headers,
            _ => &mut response.trailers,
        });
    }
    let stream: &mut StreamState = state.stream().ok_or(Status::BadArgument)?;
    match map {
        MapType::RequestHeaders => stream.request_headers.as_mut().ok_or(Status::BadArgument),
        MapType::RequestTrailers => Ok(&mut stream.request_trailers),
        MapType::ResponseHeaders => stream.response_headers.as_mut().ok_or(Status::BadArgument),
        MapType::ResponseTrailers => Ok(&mut stream.response_trailers),
        _ => Err(Status::BadArgument),
    }
}

fn map_type(raw: i32) -> Result<MapType, Status> {
    match MapType::from_raw(raw) {
        Some(MapType::Unsupported) | None => Err(Status::BadArgument),
        Some(m) => Ok(m),
    }
}

/// The buffer the guest may access in the current call, as Envoy exposes them.
fn buffer(state: &mut HostState, raw: i32) -> Result<&mut Vec<u8>, Status> {
    let phase = state.phase;
    match BufferType::from_raw(raw).ok_or(Status::BadArgument)? {
        BufferType::HttpRequestBody if phase == Phase::RequestBody => {
            Ok(&mut state.stream().ok_or(Status::NotFound)?.request_body)
        }
        BufferType::HttpResponseBody if phase == Phase::ResponseBody => {
            Ok(&mut state.stream().ok_or(Status::NotFound)?.response_body)
        }
        BufferType::HttpCallResponseBody => state
            .http_call_response
            .as_mut()
            .map(|r| &mut r.body)
            .ok_or(Status::NotFound),
        _ => Err(Status::NotFound),
    }
}

fn config_buffer(state: &HostState, raw: i32) -> Option<&[u8]> {
    match (BufferType::from_raw(raw)?, state.phase) {
        (BufferType::VmConfiguration, Phase::VmStart) => Some(&state.plugin.vm_configuration),
        (BufferType::PluginConfiguration, Phase::Configure) => Some(&state.plugin.configuration),
        _ => None,
    }
}

/// Envoy answers properties as raw bytes, integers as 8-byte little-endian values.
fn property(state: &mut HostState, path: &[u8]) -> Option<Vec<u8>> {
    let path = String::from_utf8_lossy(path).replace('\0', ".");
    let int = |v: u64| v.to_le_bytes().to_vec();
    match path.as_str() {
        "plugin_name" => return Some(state.plugin.name.clone().into_bytes()),
        "plugin_root_id" => return Some(state.plugin.root_id.clone().into_bytes()),
        "plugin_vm_id" => return Some(state.plugin.vm_id.clone().into_bytes()),
        _ => {}
    }
    let stream = state.stream()?;
    if let Some(value) = stream.properties.get(&path) {
        return Some(value.clone());
    }
    let header = |name: &[u8]| {
        stream
            .request_headers
            .as_ref()?
            .first(name)
            .map(<[u8]>::to_vec)
    };
    let info = stream.info.as_ref();
    match path.as_str() {
        "request.path" => header(b":path"),
        "request.url_path" => {
            header(b":path").map(|p| p.split(|b| *b == b'?').next().unwrap_or_default().to_vec())
        }
        "request.method" => header(b":method"),
        "request.host" => header(b":authority"),
        "request.scheme" => header(b":scheme"),
        "request.protocol" => info.map(|i| i.protocol.as_bytes().to_vec()),
        "request.id" => info.map(|i| i.request_id.clone().into_bytes()),
        "request.time" => info.map(|i| {
            int(i
                .start
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64)
        }),
        "request.duration" => {
            info.map(|i| int(i.start.elapsed().unwrap_or_default().as_nanos() as u64))
        }
        "request.size" | "request.total_size" => None,
        "response.code" => stream.response_code.map(|c| int(u64::from(c))),
        "response.code_details" => (!stream.response_code_details.is_empty())
            .then(|| stream.response_code_details.clone().into_bytes()),
        "source.address" => info
            .and_then(|i| i.source)
            .map(|a| a.to_string().into_bytes()),
        "source.port" => info
            .and_then(|i| i.source)
            .map(|a| int(u64::from(a.port()))),
        "destination.address" => info
            .and_then(|i| i.destination)
            .map(|a| a.to_string().into_bytes()),
        "destination.port" => info
            .and_then(|i| i.destination)
            .map(|a| int(u64::from(a.port()))),
        _ => None,
    }
}

fn link_env(linker: &mut Linker<HostState>) -> Result<()> {
    let env = "env";

    linker.func_wrap(
        env,
        "proxy_log",
        |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| -> i32 {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return s.code(),
            };
            let Ok(bytes) = g.read(&c, ptr, len) else {
                return Status::InvalidMemoryAccess.code();
            };
            let message = String::from_utf8_lossy(&bytes).into_owned();
            let vm_id = &c.data().plugin.vm_id;
            match log_level(level) {
                tracing::Level::TRACE => {
                    tracing::trace!(target: "headroom::plugin", vm = %vm_id, "{message}")
                }
                tracing::Level::DEBUG => {
                    tracing::debug!(target: "headroom::plugin", vm = %vm_id, "{message}")
                }
                tracing::Level::INFO => {
                    tracing::info!(target: "headroom::plugin", vm = %vm_id, "{message}")
                }
                tracing::Level::WARN => {
                    tracing::warn!(target: "headroom::plugin", vm = %vm_id, "{message}")
                }
                _ => tracing::error!(target: "headroom::plugin", vm = %vm_id, "{message}"),
            }
            c.data_mut().last_log = Some(super::state::GuestLog { level, message });
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_log_level",
        |mut c: Ctx<'_>, out: i32| -> i32 {
            let level = c.data().plugin.log_level as u32;
            status(Guest::of(&mut c).and_then(|g| g.write_u32(&mut c, out, level)))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, out: i32| -> i32 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            status(Guest::of(&mut c).and_then(|g| g.write_u64(&mut c, out, now)))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, ms: i32| -> i32 {
            let state = c.data_mut();
            if state.effective_context != state.root_context_id {
                return Status::BadArgument.code();
            }
            state.tick_period_ms = ms as u32;
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>,
         ty: i32,
         start: i32,
         max: i32,
         ptr_out: i32,
         len_out: i32|
         -> wasmtime::Result<i32> {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return Ok(s.code()),
            };
            let state = c.data_mut();
            let data = match config_buffer(state, ty) {
                Some(cfg) => cfg.to_vec(),
                None => match buffer(state, ty) {
                    Ok(b) => {
                        // Envoy clamps the range and answers OK with nothing past the end.
                        let start = (start as u32 as usize).min(b.len());
                        let end = start.saturating_add(max as u32 as usize).min(b.len());
                        b.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
                    }
                    Err(s) => return Ok(s.code()),
                },
            };
            Ok(status(g.give(&mut c, &data, ptr_out, len_out)?))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_buffer_status",
        |mut c: Ctx<'_>, ty: i32, len_out: i32, flags_out: i32| -> i32 {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return s.code(),
            };
            let state = c.data_mut();
            let len = match config_buffer(state, ty) {
                Some(cfg) => cfg.len(),
                None => match buffer(state, ty) {
                    Ok(b) => b.len(),
                    Err(s) => return s.code(),
                },
            };
            status(
                g.write_u32(&mut c, len_out, len as u32)
                    .and_then(|()| g.write_u32(&mut c, flags_out, 0)),
            )
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>, ty: i32, start: i32, size: i32, ptr: i32, len: i32| -> i32 {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return s.code(),
            };
            let data = match g.read(&c, ptr, len) {
                Ok(d) => d,
                Err(s) => return s.code(),
            };
            if !matches!(
                BufferType::from_raw(ty),
                Some(BufferType::HttpRequestBody | BufferType::HttpResponseBody)
            ) {
                return Status::BadArgument.code();
            }
            let buf = match buffer(c.data_mut(), ty) {
                Ok(b) => b,
                Err(s) => return s.code(),
            };
            let (start, size) = (start as u32 as usize, size as u32 as usize);
            // Envoy supports replacing a prefix (start 0: drain `size`, prepend) and appending.
            if start == 0 {
                buf.splice(..size.min(buf.len()), data);
            } else if start >= buf.len() {
                buf.extend_from_slice(&data);
            } else {
                return Status::BadArgument.code();
            }
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, ty: i32, ptr_out: i32, len_out: i32| -> wasmtime::Result<i32> {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return Ok(s.code()),
            };
            let encoded = match map_type(ty).and_then(|m| stream_map(c.data_mut(), m)) {
                Ok(map) => encode_map(map),
                Err(s) => return Ok(s.code()),
            };
            Ok(status(g.give(&mut c, &encoded, ptr_out, len_out)?))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_>, ty: i32, ptr: i32, len: i32| -> i32 {
            let result = Guest::of(&mut c)
                .and_then(|g| g.read(&c, ptr, len))
                .and_then(|bytes| decode_map(&bytes))
                .and_then(|pairs| {
                    let map = map_type(ty).and_then(|m| stream_map(c.data_mut(), m))?;
                    *map = pairs;
                    Ok(())
                });
            status(result)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_header_map_size",
        |mut c: Ctx<'_>, ty: i32, out: i32| -> i32 {
            let result = Guest::of(&mut c).and_then(|g| {
                let size =
                    encode_map(map_type(ty).and_then(|m| stream_map(c.data_mut(), m))?).len();
                g.write_u32(&mut c, out, size as u32)
            });
            status(result)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>,
         ty: i32,
         kp: i32,
         kl: i32,
         ptr_out: i32,
         len_out: i32|
         -> wasmtime::Result<i32> {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return Ok(s.code()),
            };
            let value = match g.read(&c, kp, kl).and_then(|key| {
                let map = map_type(ty).and_then(|m| stream_map(c.data_mut(), m))?;
                map.first(&key).map(<[u8]>::to_vec).ok_or(Status::NotFound)
            }) {
                Ok(v) => v,
                Err(s) => return Ok(s.code()),
            };
            Ok(status(g.give(&mut c, &value, ptr_out, len_out)?))
        },
    )?;

    fn edit_map(
        c: &mut Ctx<'_>,
        ty: i32,
        kp: i32,
        kl: i32,
        value: Option<(i32, i32)>,
        edit: fn(&mut HeaderMap, &[u8], &[u8]),
    ) -> i32 {
        let result = Guest::of(c).and_then(|g| {
            let key = g.read(c, kp, kl)?;
            let value = match value {
                Some((vp, vl)) => g.read(c, vp, vl)?,
                None => Vec::new(),
            };
            let map = map_type(ty).and_then(|m| stream_map(c.data_mut(), m))?;
            edit(map, &key, &value);
            Ok(())
        });
        status(result)
    }

    linker.func_wrap(
        env,
        "proxy_replace_header_map_value",
        |mut c: Ctx<'_>, ty: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> i32 {
            edit_map(&mut c, ty, kp, kl, Some((vp, vl)), |m, k, v| {
                m.replace(k, v)
            })
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_add_header_map_value",
        |mut c: Ctx<'_>, ty: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> i32 {
            edit_map(&mut c, ty, kp, kl, Some((vp, vl)), |m, k, v| {
                m.push((k.to_ascii_lowercase(), v.to_vec()))
            })
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, ty: i32, kp: i32, kl: i32| -> i32 {
            edit_map(&mut c, ty, kp, kl, None, |m, k, _| m.remove_all(k))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_continue_stream",
        |mut c: Ctx<'_>, ty: i32| -> i32 {
            let Some(ty) = StreamType::from_raw(ty) else {
                return Status::Unimplemented.code();
            };
            let state = c.data_mut();
            let id = state.effective_context;
            let Some(stream) = state.stream() else {
                return Status::NotFound.code();
            };
            match ty {
                StreamType::HttpRequest => stream.resume_request = true,
                StreamType::HttpResponse => stream.resume_response = true,
            }
            state.wakeups.push(id);
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_close_stream",
        |mut c: Ctx<'_>, ty: i32| -> i32 {
            if StreamType::from_raw(ty).is_none() {
                return Status::Unimplemented.code();
            }
            let state = c.data_mut();
            let id = state.effective_context;
            let Some(stream) = state.stream() else {
                return Status::NotFound.code();
            };
            stream.close = true;
            state.wakeups.push(id);
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         code: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc: i32|
         -> i32 {
            let result = Guest::of(&mut c).and_then(|g| {
                let details = String::from_utf8_lossy(&g.read(&c, dp, dl)?).into_owned();
                let body = g.read(&c, bp, bl)?;
                let headers = decode_map(&g.read(&c, hp, hl)?)?;
                let status = u16::try_from(code)
                    .ok()
                    .filter(|s| (100..1000).contains(s))
                    .ok_or(Status::BadArgument)?;
                let state = c.data_mut();
                let id = state.effective_context;
                let stream = state.stream().ok_or(Status::BadArgument)?;
                stream.local_response = Some(LocalResponse {
                    status,
                    headers,
                    body,
                    details,
                });
                state.wakeups.push(id);
                Ok(())
            });
            status(result)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_status",
        |mut c: Ctx<'_>, code_out: i32, ptr_out: i32, len_out: i32| -> wasmtime::Result<i32> {
            // Only gRPC calls have a status; this host has none to report.
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return Ok(s.code()),
            };
            if let Err(s) = g.write_u32(&mut c, code_out, 0) {
                return Ok(s.code());
            }
            Ok(status(g.give(&mut c, &[], ptr_out, len_out)?))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         _tp: i32,
         _tl: i32,
         timeout_ms: i32,
         token_out: i32|
         -> i32 {
            let result = Guest::of(&mut c).and_then(|g| {
                let upstream = g.read_str(&c, up, ul)?;
                let headers = decode_map(&g.read(&c, hp, hl)?)?;
                let body = g.read(&c, bp, bl)?;
                let base_url = c
                    .data()
                    .plugin
                    .clusters
                    .get(&upstream)
                    .cloned()
                    .ok_or(Status::BadArgument)?;
                // Envoy refuses calls without the three pseudo-headers it needs.
                for required in [&b":method"[..], b":path", b":authority"] {
                    headers.first(required).ok_or(Status::BadArgument)?;
                }
                let state = c.data_mut();
                state.next_token = state.next_token.wrapping_add(1).max(1);
                let token = state.next_token;
                let context_id = state.effective_context;
                state.http_calls.push(HttpCallRequest {
                    token,
                    context_id,
                    base_url,
                    headers,
                    body,
                    timeout_ms: timeout_ms as u32,
                });
                g.write_u32(&mut c, token_out, token)
            });
            status(result)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_shared_data",
        |mut c: Ctx<'_>,
         kp: i32,
         kl: i32,
         ptr_out: i32,
         len_out: i32,
         cas_out: i32|
         -> wasmtime::Result<i32> {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return Ok(s.code()),
            };
            let (value, cas) = match g.read(&c, kp, kl).and_then(|key| {
                c.data()
                    .plugin
                    .shared_data
                    .get(&key)
                    .ok_or(Status::NotFound)
            }) {
                Ok(found) => found,
                Err(s) => return Ok(s.code()),
            };
            if let Err(s) = g.give(&mut c, &value, ptr_out, len_out)? {
                return Ok(s.code());
            }
            Ok(status(g.write_u32(&mut c, cas_out, cas)))
        },
    )?;

    // As Envoy (proxy-wasm-cpp-host `set_shared_data`): the value is read as `(ptr, len)` like
    // any other, so a null pointer with length 0 (the Rust SDK's `set_shared_data(key, None,
    // cas)`) stores an empty value; the key is not deleted (the ABI has no delete).
    linker.func_wrap(
        env,
        "proxy_set_shared_data",
        |mut c: Ctx<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> i32 {
            let result = Guest::of(&mut c).and_then(|g| {
                let key = g.read(&c, kp, kl)?;
                let value = g.read(&c, vp, vl)?;
                match c.data().plugin.shared_data.set(&key, &value, cas as u32) {
                    Status::Ok => Ok(()),
                    s => Err(s),
                }
            });
            status(result)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_define_metric",
        |mut c: Ctx<'_>, ty: i32, np: i32, nl: i32, id_out: i32| -> i32 {
            let result = Guest::of(&mut c).and_then(|g| {
                let kind = MetricType::from_raw(ty).ok_or(Status::BadArgument)?;
                let name = g.read_str(&c, np, nl)?;
                let id = c.data().plugin.metrics.define(kind, &name);
                g.write_u32(&mut c, id_out, id)
            });
            status(result)
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_increment_metric",
        |c: Ctx<'_>, id: i32, delta: i64| -> i32 {
            c.data().plugin.metrics.increment(id as u32, delta).code()
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_record_metric",
        |c: Ctx<'_>, id: i32, value: i64| -> i32 {
            c.data()
                .plugin
                .metrics
                .record(id as u32, value as u64)
                .code()
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, out: i32| -> i32 {
            let result = Guest::of(&mut c).and_then(|g| {
                let value = c.data().plugin.metrics.value(id as u32)?;
                g.write_u64(&mut c, out, value)
            });
            status(result)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_property",
        |mut c: Ctx<'_>, pp: i32, pl: i32, ptr_out: i32, len_out: i32| -> wasmtime::Result<i32> {
            let g = match Guest::of(&mut c) {
                Ok(g) => g,
                Err(s) => return Ok(s.code()),
            };
            let value = match g
                .read(&c, pp, pl)
                .and_then(|path| property(c.data_mut(), &path).ok_or(Status::NotFound))
            {
                Ok(v) => v,
                Err(s) => return Ok(s.code()),
            };
            Ok(status(g.give(&mut c, &value, ptr_out, len_out)?))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_property",
        |mut c: Ctx<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> i32 {
            let result = Guest::of(&mut c).and_then(|g| {
                let path = String::from_utf8_lossy(&g.read(&c, pp, pl)?).replace('\0', ".");
                let value = g.read(&c, vp, vl)?;
                let stream = c.data_mut().stream().ok_or(Status::BadArgument)?;
                stream.properties.insert(path, value);
                Ok(())
            });
            status(result)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, id: i32| -> i32 {
            let state = c.data_mut();
            let id = id as u32;
            if id == state.root_context_id || state.streams.contains_key(&id) {
                state.effective_context = id;
                Status::Ok.code()
            } else {
                Status::BadArgument.code()
            }
        },
    )?;

    linker.func_wrap(env, "proxy_done", |_: Ctx<'_>| -> i32 { Status::Ok.code() })?;
    Ok(())
}

fn link_wasi(linker: &mut Linker<HostState>) -> Result<()> {
    let wasi = "wasi_snapshot_preview1";

    linker.func_wrap(
        wasi,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, written_out: i32| -> i32 {
            if fd != 1 && fd != 2 {
                return errno::BADF;
            }
            let Ok(g) = Guest::of(&mut c) else {
                return errno::FAULT;
            };
            let mut text = Vec::new();
            for i in 0..iovs_len.max(0) {
                let Ok(iov) = g.read(&c, iovs + i * 8, 8) else {
                    return errno::FAULT;
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                match g.read(&c, ptr, len) {
                    Ok(bytes) => text.extend_from_slice(&bytes),
                    Err(_) => return errno::FAULT,
                }
            }
            let line = String::from_utf8_lossy(&text);
            let line = line.trim_end();
            if !line.is_empty() {
                if fd == 1 {
                    tracing::info!(target: "headroom::plugin", "{line}");
                } else {
                    tracing::error!(target: "headroom::plugin", "{line}");
                }
            }
            match g.write_u32(&mut c, written_out, text.len() as u32) {
                Ok(()) => errno::SUCCESS,
                Err(_) => errno::FAULT,
            }
        },
    )?;

    // No environment and no arguments, as Envoy gives a plugin without `environment_variables`.
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            wasi,
            name,
            |mut c: Ctx<'_>, count_out: i32, size_out: i32| -> i32 {
                let Ok(g) = Guest::of(&mut c) else {
                    return errno::FAULT;
                };
                match g
                    .write_u32(&mut c, count_out, 0)
                    .and_then(|()| g.write_u32(&mut c, size_out, 0))
                {
                    Ok(()) => errno::SUCCESS,
                    Err(_) => errno::FAULT,
                }
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(wasi, name, |_: Ctx<'_>, _: i32, _: i32| -> i32 {
            errno::SUCCESS
        })?;
    }

    linker.func_wrap(
        wasi,
        "proc_exit",
        |_: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!(
                "guest called proc_exit({code})"
            )))
        },
    )?;

    linker.func_wrap(
        wasi,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, out: i32| -> i32 {
            let now = match id {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64,
                1 => monotonic_nanos(),
                _ => return errno::INVAL,
            };
            match Guest::of(&mut c).and_then(|g| g.write_u64(&mut c, out, now)) {
                Ok(()) => errno::SUCCESS,
                Err(_) => errno::FAULT,
            }
        },
    )?;

    linker.func_wrap(
        wasi,
        "random_get",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> i32 {
            let Ok(g) = Guest::of(&mut c) else {
                return errno::FAULT;
            };
            let mut bytes = vec![0u8; len.max(0) as usize];
            fill_random(&mut bytes);
            match g.write_bytes(&mut c, ptr, &bytes) {
                Ok(()) => errno::SUCCESS,
                Err(_) => errno::FAULT,
            }
        },
    )?;

    Ok(())
}

fn monotonic_nanos() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Fills `out` from the OS entropy source, falling back to a hash of the clock.
fn fill_random(out: &mut [u8]) {
    use std::io::Read;
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(out))
        .is_ok()
    {
        return;
    }
    let mut seed = monotonic_nanos() ^ 0x9E37_79B9_7F4A_7C15;
    for b in out {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
}
