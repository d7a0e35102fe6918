// The CUDA device query, device memory, streams and event timing.
#include <cuda_runtime.h>

#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/cuda_info.h"
#include "cuda/cuda_ops.h"

#ifndef RECA_CUDA_ARCHS
#define RECA_CUDA_ARCHS "unknown"
#endif

namespace reca::cuda {

namespace detail {
void raise(const char* op, cudaError_t err) {
  cudaGetLastError();  // a non-sticky error (e.g. a failed allocation) must not resurface later
  const ErrorCode code =
      err == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::Cuda;
  throw Error(code, std::string(op) + ": " + cudaGetErrorString(err));
}
void malloc_async(void** p, size_t bytes, cudaStream_t stream, const char* op) {
  *p = nullptr;
  const cudaError_t err = cudaMallocAsync(p, bytes, stream);
  if (err == cudaSuccess) return;
  *p = nullptr;
  cudaGetLastError();
  if (err == cudaErrorMemoryAllocation)
    fail(ErrorCode::OutOfMemory, "%s: could not allocate %llu bytes of device memory (scratch); use a smaller "
         "batch or model", op, static_cast<unsigned long long>(bytes));
  raise(op, err);
}
}  // namespace detail

CudaInfo query_cuda() {
  CudaInfo info;
  info.compiled = true;
  info.architectures = RECA_CUDA_ARCHS;
  info.runtime_version = CUDART_VERSION;
  try {
    int driver = 0;
    if (cudaDriverGetVersion(&driver) == cudaSuccess) info.driver_version = driver;
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      cudaGetLastError();  // leave no pending (non-sticky) error for later calls
      std::string what;
      if (err == cudaErrorNoDevice)
        what = "no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and `nvidia-smi`)";
      else if (err == cudaErrorInsufficientDriver)
        what = "the NVIDIA driver is missing or older than this build needs (CUDA runtime " +
               std::to_string(CUDART_VERSION / 1000) + "." +
               std::to_string(CUDART_VERSION % 1000 / 10) +
               "); install or update the driver, or use backend \"cpu\"";
      else
        what = "the CUDA driver did not answer; check that the NVIDIA driver is installed and "
               "`nvidia-smi` works, or use backend \"cpu\"";
      info.reason = std::string(cudaGetErrorString(err)) + ": " + what;
      return info;
    }
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp prop;
      if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      CudaDevice d;
      d.index = i;
      d.name = prop.name;
      d.major = prop.major;
      d.minor = prop.minor;
      d.multiprocessors = prop.multiProcessorCount;
      d.total_memory = prop.totalGlobalMem;
      info.devices.push_back(d);
    }
    if (info.devices.empty())
      info.reason = count == 0 ? "the CUDA driver reports no devices"
                               : "the CUDA driver reports devices but none could be queried";
  } catch (...) {
    info.reason = "the CUDA device query failed unexpectedly";
  }
  return info;
}

void set_device(int index) { RECA_CUDA_CALL("cudaSetDevice", cudaSetDevice(index)); }

void* device_alloc(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  RECA_CUDA_CALL("cudaMalloc", cudaMalloc(&p, bytes));
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  RECA_CUDA_CALL("copy_to_device", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  RECA_CUDA_CALL("copy_to_device", cudaStreamSynchronize(stream));
}

void copy_to_host(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  RECA_CUDA_CALL("copy_to_host", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  RECA_CUDA_CALL("copy_to_host", cudaStreamSynchronize(stream));
}

void copy_on_device(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  RECA_CUDA_CALL("copy_on_device",
                 cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
}

void fill_bytes(void* dst, int byte, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  RECA_CUDA_CALL("fill_bytes", cudaMemsetAsync(dst, byte, bytes, stream));
}

Stream stream_create() {
  cudaStream_t s = nullptr;
  RECA_CUDA_CALL("cudaStreamCreate", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(Stream stream) noexcept {
  if (stream) cudaStreamDestroy(stream);
}

void synchronize(Stream stream) { RECA_CUDA_CALL("cudaStreamSynchronize", cudaStreamSynchronize(stream)); }

void device_synchronize() { RECA_CUDA_CALL("cudaDeviceSynchronize", cudaDeviceSynchronize()); }

EventTimer::EventTimer() {
  cudaEvent_t a = nullptr, b = nullptr;
  RECA_CUDA_CALL("cudaEventCreate", cudaEventCreate(&a));
  const cudaError_t err = cudaEventCreate(&b);
  if (err != cudaSuccess) {
    cudaEventDestroy(a);
    detail::raise("cudaEventCreate", err);
  }
  start_ = a;
  stop_ = b;
}

EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void EventTimer::start(Stream stream) {
  RECA_CUDA_CALL("cudaEventRecord", cudaEventRecord(static_cast<cudaEvent_t>(start_), stream));
}

void EventTimer::stop(Stream stream) {
  RECA_CUDA_CALL("cudaEventRecord", cudaEventRecord(static_cast<cudaEvent_t>(stop_), stream));
}

float EventTimer::elapsed_ms() {
  RECA_CUDA_CALL("cudaEventSynchronize", cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0;
  RECA_CUDA_CALL("cudaEventElapsedTime",
                 cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_),
                                      static_cast<cudaEvent_t>(stop_)));
  return ms;
}

}  // namespace reca::cuda
