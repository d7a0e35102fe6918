#include "core/nccl_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/dynlib.h"
#include "core/error.h"

namespace reca::nccl {

namespace {

using Result = int;  // ncclResult_t
constexpr Result kSuccess = 0;
constexpr int kFloat32 = 7;  // ncclFloat32
struct UniqueId {
  char internal[kUniqueIdBytes];
};

struct Api {
  Probe probe;
  Result (*get_version)(int*) = nullptr;
  Result (*get_unique_id)(UniqueId*) = nullptr;
  Result (*comm_init_rank)(void**, int, UniqueId, int) = nullptr;
  Result (*comm_destroy)(void*) = nullptr;
  Result (*group_start)() = nullptr;
  Result (*group_end)() = nullptr;
  Result (*send)(const void*, size_t, int, int, void*, void*) = nullptr;
  Result (*recv)(void*, size_t, int, int, void*, void*) = nullptr;
  Result (*broadcast)(const void*, void*, size_t, int, int, void*, void*) = nullptr;
  const char* (*error_string)(Result) = nullptr;
};

Api load() {
  Api a;
  const DynLib lib = open_first_library({"libnccl.so.2", "libnccl.so"}, RTLD_NOW | RTLD_LOCAL, "RECA_NCCL_LIB");
  void* h = lib.handle;
  if (!h) {
    a.probe.error = "no NCCL library (" + lib.errors + ")";
    return a;
  }
  a.probe.library = lib.name;
  bool ok = true;
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
    if (!fn) ok = false;
  };
  sym(a.get_version, "ncclGetVersion");
  sym(a.get_unique_id, "ncclGetUniqueId");
  sym(a.comm_init_rank, "ncclCommInitRank");
  sym(a.comm_destroy, "ncclCommDestroy");
  sym(a.group_start, "ncclGroupStart");
  sym(a.group_end, "ncclGroupEnd");
  sym(a.send, "ncclSend");
  sym(a.recv, "ncclRecv");
  sym(a.broadcast, "ncclBroadcast");
  sym(a.error_string, "ncclGetErrorString");
  if (!ok) {
    a.probe.error = a.probe.library + " lacks a function reca-engine uses (NCCL 2.7 or later has them)";
    return a;
  }
  a.get_version(&a.probe.version);
  a.probe.available = true;
  return a;
}

Api& api() {
  static Api a = load();
  return a;
}

Api& ready() {
  Api& a = api();
  RECA_CHECK(a.probe.available, Device, "NCCL is not available: %s", a.probe.error.c_str());
  return a;
}

void check(Result r, const char* what) {
  if (r != kSuccess) fail(ErrorCode::Device, "%s failed: %s", what, api().error_string(r));
}

}  // namespace

Probe probe() { return api().probe; }

void unique_id(void* out) {
  UniqueId id;
  check(ready().get_unique_id(&id), "ncclGetUniqueId");
  std::memcpy(out, &id, sizeof id);
}

void* comm_init(int size, int rank, const void* id) {
  UniqueId u;
  std::memcpy(&u, id, sizeof u);
  void* comm = nullptr;
  check(ready().comm_init_rank(&comm, size, u, rank), "ncclCommInitRank");
  return comm;
}

void comm_destroy(void* comm) noexcept {
  if (comm && api().probe.available) api().comm_destroy(comm);
}

void group_start() { check(ready().group_start(), "ncclGroupStart"); }
void group_end() { check(ready().group_end(), "ncclGroupEnd"); }

void send_floats(const float* buf, int64_t count, int peer, void* comm, void* stream) {
  check(ready().send(buf, static_cast<size_t>(count), kFloat32, peer, comm, stream), "ncclSend");
}

void recv_floats(float* buf, int64_t count, int peer, void* comm, void* stream) {
  check(ready().recv(buf, static_cast<size_t>(count), kFloat32, peer, comm, stream), "ncclRecv");
}

void broadcast_floats(float* buf, int64_t count, int root, void* comm, void* stream) {
  check(ready().broadcast(buf, buf, static_cast<size_t>(count), kFloat32, root, comm, stream),
        "ncclBroadcast");
}

}  // namespace reca::nccl
