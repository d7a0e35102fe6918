// C++ failures -> JS RecaError. Every entry point runs its body through
// `guarded`, so no C++ exception crosses into Node-API uncaught: reca::Error
// keeps its code, bad_alloc becomes E_OUT_OF_MEMORY, anything else E_INTERNAL.
#pragma once
#include <napi.h>

#include <exception>
#include <string>
#include <utility>

namespace reca::addon {

// A RecaError (the class JS handed to init()) with `.code`; a plain Error with
// `.code` before init() ran.
Napi::Error make_error(Napi::Env env, const char* code, const std::string& message);

// The JS error for a captured C++ exception (used when a job's failure is
// delivered back on the JS thread).
Napi::Error error_from_exception(Napi::Env env, const std::exception_ptr& e);

template <class F>
Napi::Value guarded(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;  // already a JS exception; node-addon-api throws it into JS
  } catch (...) {
    throw error_from_exception(env, std::current_exception());
  }
}

}  // namespace reca::addon
