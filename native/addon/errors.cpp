#include "addon/errors.h"

#include <new>

#include "addon/addon.h"
#include "core/error.h"

namespace reca::addon {

Napi::Error make_error(Napi::Env env, const char* code, const std::string& message) {
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  if (addon != nullptr && !addon->error_class.IsEmpty()) {
    Napi::Object err = addon->error_class.New(
        {Napi::String::New(env, code), Napi::String::New(env, message)});
    return Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Error error_from_exception(Napi::Env env, const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Napi::Error& err) {
    return err;
  } catch (const reca::Error& err) {
    return make_error(env, error_code_name(err.code()), err.what());
  } catch (const std::bad_alloc&) {
    return make_error(env, "E_OUT_OF_MEMORY", "out of host memory");
  } catch (const std::exception& err) {
    return make_error(env, "E_INTERNAL", std::string("internal error: ") + err.what());
  } catch (...) {
    return make_error(env, "E_INTERNAL", "internal error (unknown native exception)");
  }
}

}  // namespace reca::addon
