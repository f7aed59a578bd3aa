// Per-instance depth statistics in one pass over the image (after a min/max pass over the labels): the compiled path of
// icm_depth_ros.instances.statistics.instance_statistics (that module documents the statistics; this file only computes
// them). Plain CPython API and the buffer protocol: no NumPy headers, so any NumPy the node runs with works.
//
//   statistics(depth, labels, firmness, width, min_pixels, near_percent) -> bytes | None
//
// depth:      C-contiguous float32 [H*W], NaN (or inf) = no estimate
// labels:     C-contiguous integers or bools [H*W]; 0 = background
// firmness:   C-contiguous float32 [H*W], or None (counts as 1)
// width:      W, to turn a flat index into (u, v)
// min_pixels: instances with fewer pixels are left out
// returns     n x FIELDS float64 (see Field), one row per kept instance, ascending label; empty when no pixel
//             is labelled; None when a label is negative or >= 4 x the pixel count (too sparse for the
//             kernel's table: the caller compacts the ids to 1..n and calls again)
//
// One pass over the image, run by run (a run: consecutive pixels of one label in a row), accumulates each
// instance's sums and box and copies its finite depths, as order-preserving integer keys, into one buffer;
// then a radix select over each instance's runs (order_statistics) finds its median and near depth. The
// interpreter lock is released while it runs.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "image_loop.h"  // ICM_IMAGE_LOOP: the image loops also for AVX2 on x86-64

namespace {

enum Field {
  kLabel, kCount, kValidCount, kU0, kV0, kU1, kV1, kSumZ, kSumUZ, kSumVZ, kSumFirmness, kMedian, kNear, kFields
};

struct Accumulator {
  int64_t label = 0, count = 0, valid = 0;
  int64_t u0 = std::numeric_limits<int64_t>::max(), v0 = std::numeric_limits<int64_t>::max(), u1 = -1, v1 = -1;
  double sum_z = 0.0, sum_uz = 0.0, sum_vz = 0.0, sum_firmness = 0.0;
  int64_t first_run = -1, last_run = -1;  // the instance's runs, a chain through Run::next
};

// A run: consecutive pixels of one label in one row. Its finite depths, as keys, are keys[start, start + size).
struct Run {
  int64_t start, size, next;
};

// np.percentile's default (linear) method on an ascending view, numpy's lerp with its rounding, given the
// two order statistics around the virtual index.
double lerp(double a, double b, double t) {
  const double difference = b - a;
  return t >= 0.5 ? b - difference * (1.0 - t) : a + difference * t;
}

// Finite floats as unsigned keys in the same order (negative ones flipped), and back.
inline uint32_t float_key(uint32_t bits) { return bits & 0x80000000u ? ~bits : bits | 0x80000000u; }
inline float key_float(uint32_t key) {
  const uint32_t bits = key & 0x80000000u ? key & 0x7fffffffu : ~key;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// One instance's keys: the stretches of its runs, in raster order.
class InstanceKeys {
 public:
  InstanceKeys(const uint32_t* keys, const std::vector<Run>& runs, int64_t first) : keys_(keys), runs_(runs), first_(first) {}
  template <typename Function>
  void each_stretch(Function function) const {  // function(const uint32_t* begin, int64_t size)
    for (int64_t r = first_; r >= 0; r = runs_[r].next) function(keys_ + runs_[r].start, runs_[r].size);
  }

 private:
  const uint32_t* keys_;
  const std::vector<Run>& runs_;
  int64_t first_;
};

struct Scratch {
  std::vector<uint32_t> histogram, candidates;
  std::vector<uint8_t> wanted;
};

// The values at the ascending ranks `ranks` (each < n) of an instance's n keys: a radix select. One
// histogram of the keys over [min, max] in at most n / 8 buckets (4096 at most); then only the keys in the
// buckets that hold a wanted rank are copied out and sorted: three reads of every key, none moved.
ICM_IMAGE_LOOP void order_statistics(const InstanceKeys& keys, int64_t n, const int64_t* ranks, int count, double* out,
                      Scratch* scratch) {
  uint32_t low = 0xffffffffu, high = 0;
  keys.each_stretch([&](const uint32_t* k, int64_t size) {
    for (int64_t i = 0; i < size; ++i) {
      low = std::min(low, k[i]);
      high = std::max(high, k[i]);
    }
  });
  const uint32_t most = static_cast<uint32_t>(std::clamp<int64_t>(n / 8, 16, 4096));
  int shift = 0;
  while (((high - low) >> shift) >= most) ++shift;
  const size_t buckets = static_cast<size_t>((high - low) >> shift) + 1;
  scratch->histogram.assign(2 * buckets, 0);  // two interleaved histograms: no chain of increments of one counter
  uint32_t* h = scratch->histogram.data();
  keys.each_stretch([&](const uint32_t* k, int64_t size) {
    int64_t i = 0;
    for (; i + 2 <= size; i += 2) {
      ++h[((k[i] - low) >> shift) * 2];
      ++h[((k[i + 1] - low) >> shift) * 2 + 1];
    }
    if (i < size) ++h[((k[i] - low) >> shift) * 2];
  });
  // Each wanted rank's bucket and the rank of that bucket's first key.
  uint32_t bucket_of[4];
  int64_t first_rank[4];
  for (int r = 0; r < count; ++r) {
    int64_t seen = 0;
    size_t b = 0;
    while (seen + h[2 * b] + h[2 * b + 1] <= ranks[r]) seen += h[2 * b] + h[2 * b + 1], ++b;
    bucket_of[r] = static_cast<uint32_t>(b);
    first_rank[r] = seen;
  }
  // The keys of the wanted buckets (usually a few hundred), sorted: bucket order is key order.
  scratch->wanted.assign(buckets, 0);
  for (int r = 0; r < count; ++r) scratch->wanted[bucket_of[r]] = 1;
  std::vector<uint32_t>& candidates = scratch->candidates;
  candidates.clear();
  keys.each_stretch([&](const uint32_t* k, int64_t size) {
    for (int64_t i = 0; i < size; ++i) {
      if (scratch->wanted[(k[i] - low) >> shift]) candidates.push_back(k[i]);
    }
  });
  std::sort(candidates.begin(), candidates.end());
  for (int r = 0; r < count; ++r) {  // before the bucket among the candidates: the lower wanted buckets' keys
    const uint32_t from = low + (bucket_of[r] << shift);
    const auto below = std::lower_bound(candidates.begin(), candidates.end(), from) - candidates.begin();
    out[r] = key_float(candidates[static_cast<size_t>(below + (ranks[r] - first_rank[r]))]);
  }
}

// One of four interleaved partial sums of a run.
struct Lane {
  double z = 0.0, uz = 0.0, firmness = 0.0;
};

// One pixel of a run: its depth into the lane's sums and, when finite, its key into the run's stretch.
inline void add_pixel(const float* z, const float* firmness, int64_t k, Lane* lane, uint32_t* out, int64_t* written) {
  uint32_t bits;
  std::memcpy(&bits, z + k, sizeof bits);
  const bool finite = (bits & 0x7f800000u) != 0x7f800000u;
  const double value = finite ? static_cast<double>(z[k]) : 0.0;
  lane->z += value;
  lane->uz += static_cast<double>(k) * value;
  if (firmness) lane->firmness += firmness[k];
  out[*written] = float_key(bits);
  *written += finite;
}

template <typename Label>
ICM_IMAGE_LOOP bool accumulate(const float* depth, const Label* labels, const float* firmness, int64_t pixels, int64_t width,
                int64_t min_pixels, double near_percent, std::vector<double>* rows) {
  Label low = labels[0], high = labels[0];
  for (int64_t i = 1; i < pixels; ++i) {
    low = std::min(low, labels[i]);
    high = std::max(high, labels[i]);
  }
  if constexpr (std::is_signed_v<Label>) {
    if (low < 0) return false;
  }
  if (static_cast<uint64_t>(high) >= 4 * static_cast<uint64_t>(pixels)) return false;

  // One pass over the image, run by run: sums and boxes per instance, finite depths as keys in raster order.
  std::vector<int64_t> slot(static_cast<size_t>(high) + 1, 0);  // label -> index in acc + 1 (first seen first)
  std::vector<Accumulator> acc;
  std::vector<Run> runs;
  std::unique_ptr<uint32_t[]> keys(new uint32_t[static_cast<size_t>(pixels)]);  // not zeroed: written before read
  int64_t written_total = 0;
  for (int64_t row = 0, i = 0; i < pixels; ++row) {
    const int64_t row_start = i, row_end = i + width;
    while (i < row_end) {
      const Label label = labels[i];
      int64_t end = i + 1;
      while (end < row_end && labels[end] == label) ++end;
      if (label == 0) {
        i = end;
        continue;
      }
      int64_t& index = slot[static_cast<size_t>(label)];
      if (index == 0) {
        acc.emplace_back();
        acc.back().label = static_cast<int64_t>(label);
        index = static_cast<int64_t>(acc.size());
      }
      Accumulator& a = acc[static_cast<size_t>(index - 1)];
      const int64_t length = end - i;
      Lane lanes[4];  // four lanes of double sums: independent additions instead of one chain per pixel
      uint32_t* out = keys.get() + written_total;
      int64_t written = 0, k = 0;
      const float* z = depth + i;
      const float* firm = firmness ? firmness + i : nullptr;
      for (; k + 4 <= length; k += 4) {
        add_pixel(z, firm, k, &lanes[0], out, &written);
        add_pixel(z, firm, k + 1, &lanes[1], out, &written);
        add_pixel(z, firm, k + 2, &lanes[2], out, &written);
        add_pixel(z, firm, k + 3, &lanes[3], out, &written);
      }
      for (; k < length; ++k) add_pixel(z, firm, k, &lanes[0], out, &written);
      const double run_z = (lanes[0].z + lanes[1].z) + (lanes[2].z + lanes[3].z);
      const double run_uz = (lanes[0].uz + lanes[1].uz) + (lanes[2].uz + lanes[3].uz);
      const int64_t u_start = i - row_start;
      a.count += length;
      a.u0 = std::min(a.u0, u_start);
      a.u1 = std::max(a.u1, u_start + length);
      a.v0 = std::min(a.v0, row);
      a.v1 = row + 1;
      a.sum_z += run_z;
      a.sum_uz += run_uz + static_cast<double>(u_start) * run_z;
      a.sum_vz += static_cast<double>(row) * run_z;
      a.sum_firmness += firm ? (lanes[0].firmness + lanes[1].firmness) + (lanes[2].firmness + lanes[3].firmness)
                             : static_cast<double>(length);
      a.valid += written;
      if (written > 0) {
        const int64_t run = static_cast<int64_t>(runs.size());
        runs.push_back(Run{written_total, written, -1});
        (a.last_run >= 0 ? runs[static_cast<size_t>(a.last_run)].next : a.first_run) = run;
        a.last_run = run;
        written_total += written;
      }
      i = end;
    }
  }

  // Then per instance, by ascending label: the order statistics and one output row.
  std::vector<size_t> order(acc.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return acc[x].label < acc[y].label; });
  const int64_t keep_from = std::max<int64_t>(min_pixels, 1);
  Scratch scratch;
  for (const size_t k : order) {
    const Accumulator& a = acc[k];
    if (a.count < keep_from) continue;
    double median = std::nan(""), near = std::nan("");
    if (a.valid > 0) {
      const double last = static_cast<double>(a.valid - 1);
      const double median_position = 0.5 * last, near_position = near_percent / 100.0 * last;
      const int64_t median_low = static_cast<int64_t>(std::floor(median_position));
      const int64_t near_low = static_cast<int64_t>(std::floor(near_position));
      const int64_t ranks[4] = {median_low, std::min(median_low + 1, a.valid - 1), near_low,
                                std::min(near_low + 1, a.valid - 1)};
      double at[4];
      order_statistics(InstanceKeys(keys.get(), runs, a.first_run), a.valid, ranks, 4, at, &scratch);
      median = lerp(at[0], at[1], median_position - static_cast<double>(median_low));
      near = lerp(at[2], at[3], near_position - static_cast<double>(near_low));
    }
    const double row[kFields] = {
        static_cast<double>(a.label), static_cast<double>(a.count), static_cast<double>(a.valid),
        static_cast<double>(a.u0), static_cast<double>(a.v0), static_cast<double>(a.u1), static_cast<double>(a.v1),
        a.sum_z, a.sum_uz, a.sum_vz, a.sum_firmness, median, near};
    rows->insert(rows->end(), row, row + kFields);
  }
  return true;
}

// The buffer's integer type by its struct format character, e.g. "H" (uint16) or "<i" (int32).
template <typename Function>
bool with_label_type(const Py_buffer& view, Function function) {
  const char* format = view.format ? view.format : "B";
  while (*format == '<' || *format == '=' || *format == '@' || *format == '>' || *format == '!') ++format;
  if (format[0] == '\0' || format[1] != '\0') return false;
  const void* data = view.buf;
  switch (format[0]) {
    case '?': case 'B': function(static_cast<const uint8_t*>(data)); return true;
    case 'b': function(static_cast<const int8_t*>(data)); return true;
    case 'H': function(static_cast<const uint16_t*>(data)); return true;
    case 'h': function(static_cast<const int16_t*>(data)); return true;
    case 'I': function(static_cast<const uint32_t*>(data)); return view.itemsize == 4;
    case 'i': function(static_cast<const int32_t*>(data)); return view.itemsize == 4;
    case 'L': case 'Q': if (view.itemsize != 8) return false; function(static_cast<const uint64_t*>(data)); return true;
    case 'l': case 'q': if (view.itemsize != 8) return false; function(static_cast<const int64_t*>(data)); return true;
    default: return false;
  }
}

bool is_float32(const Py_buffer& view) {
  return view.itemsize == 4 && view.format != nullptr && (std::strcmp(view.format, "f") == 0 ||
                                                         std::strcmp(view.format, "<f") == 0 ||
                                                         std::strcmp(view.format, "=f") == 0);
}

PyObject* statistics(PyObject*, PyObject* args) {
  PyObject *depth_object = nullptr, *labels_object = nullptr, *firmness_object = nullptr;
  Py_ssize_t width = 0, min_pixels = 0;
  double near_percent = 0.0;
  if (!PyArg_ParseTuple(args, "OOOnnd", &depth_object, &labels_object, &firmness_object, &width, &min_pixels,
                        &near_percent)) {
    return nullptr;
  }
  const bool has_firmness = firmness_object != Py_None;
  const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;  // refused (BufferError) where not C-contiguous
  Py_buffer depth{}, labels{}, firmness{};
  PyObject* result = nullptr;
  do {
    if (PyObject_GetBuffer(depth_object, &depth, flags) != 0) break;
    if (PyObject_GetBuffer(labels_object, &labels, flags) != 0) break;
    if (has_firmness && PyObject_GetBuffer(firmness_object, &firmness, flags) != 0) break;
    if (!is_float32(depth) || (has_firmness && !is_float32(firmness))) {
      PyErr_SetString(PyExc_TypeError, "depth and firmness must be float32");
      break;
    }
    const Py_ssize_t pixels = depth.len / 4;
    if (labels.itemsize <= 0 || labels.len / labels.itemsize != pixels || (has_firmness && firmness.len / 4 != pixels)) {
      PyErr_SetString(PyExc_ValueError, "depth, labels and firmness must have the same number of pixels");
      break;
    }
    if (width <= 0 || pixels % width != 0) {
      PyErr_Format(PyExc_ValueError, "width %zd does not divide %zd pixels", width, pixels);
      break;
    }
    std::vector<double> rows;
    const float* z = static_cast<const float*>(depth.buf);
    const float* firm = has_firmness ? static_cast<const float*>(firmness.buf) : nullptr;
    bool dense = true;
    bool known_type = true;
    Py_BEGIN_ALLOW_THREADS
    known_type = pixels == 0 || with_label_type(labels, [&](auto* typed) {
      dense = accumulate(z, typed, firm, pixels, width, min_pixels, near_percent, &rows);
    });
    Py_END_ALLOW_THREADS
    if (!known_type) {
      PyErr_Format(PyExc_TypeError, "labels of struct format '%s' are not supported (need integers or bools)",
                   labels.format ? labels.format : "B");
      break;
    }
    if (!dense) {
      Py_INCREF(Py_None);
      result = Py_None;
      break;
    }
    result = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(rows.data()),
                                       static_cast<Py_ssize_t>(rows.size() * sizeof(double)));
  } while (false);
  for (Py_buffer* view : {&depth, &labels, &firmness}) {
    if (view->obj != nullptr) PyBuffer_Release(view);
  }
  return result;
}

PyMethodDef methods[] = {
    {"statistics", statistics, METH_VARARGS,
     "statistics(depth, labels, firmness, width, min_pixels, near_percent) -> bytes of n x FIELDS float64, or None"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_instance_kernel", "Per-instance depth statistics (compiled).", -1,
                      methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__instance_kernel() {
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddIntConstant(m, "FIELDS", kFields) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
