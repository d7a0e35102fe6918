{
  "variables": {
    "reca_cflags": ["-std=c++17", "-O3", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-fexceptions"]
  },
  "target_defaults": {
    "include_dirs": ["native"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags_cc": ["<@(reca_cflags)"]
  },
  "targets": [
    {
      "target_name": "reca_cpu_avx2",
      "type": "static_library",
      "sources": ["<!@(node tools/gyp-sources.js native/cpu)"],
      "defines": ["RECA_ISA_LEVEL=1"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "reca_cpu_avx512",
      "type": "static_library",
      "sources": ["<!@(node tools/gyp-sources.js native/cpu)"],
      "defines": ["RECA_ISA_LEVEL=2"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma", "-mf16c",
                    "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
    },
    {
      "target_name": "reca",
      "dependencies": ["reca_cpu_avx2", "reca_cpu_avx512"],
      "sources": [
        "<!@(node tools/gyp-sources.js native/core)",
        "<!@(node tools/gyp-sources.js native/cpu)",
        "<!@(node tools/gyp-sources.js native/model)",
        "<!@(node tools/gyp-sources.js native/bench)",
        "<!@(node tools/gyp-sources.js native/addon)",
        "native/cuda/cuda_absent.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["RECA_ISA_LEVEL=0", "NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
