// Area shrink of a uint8 image, one window of the result: the compiled path of
// icm_depth_ros.processing.geometry.InputGeometry.to_model. Plain CPython API and the buffer protocol: no NumPy
// headers, so any NumPy the node runs with works.
//
//   shrink(image, scaled_height, scaled_width, row_begin, row_end, column_begin, column_end, out, fused,
//          reverse_channels=False) -> None
//
// image:  uint8 [H, W, C] (C = 1, 3 or 4) or [H, W]; pixels packed in each row, rows may be padded
// scaled: the size (sh, sw) the whole image is shrunk to, 1 <= sh <= H and 1 <= sw <= W
// window: rows [row_begin, row_end) and columns [column_begin, column_end) of the shrunk image
// out:    writable uint8 [row_end - row_begin, column_end - column_begin(, C)], laid out like image, not
//         overlapping it; receives the window
// fused:  whether the OpenCV build to match rounds its multiply-adds once (below)
// reverse_channels: a 3-channel image whose channels out receives in the opposite order (a bgr8 camera image
//         into an RGB model input): the numbers of the channel-reversed image, without a copy of it
//
// The numbers are cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)[row_begin:row_end,
// column_begin:column_end], bit for bit, wherever OpenCV takes its generic area path: every shrink except the
// one where both ratios H / sh and W / sw are whole numbers (OpenCV then sums whole blocks in integers; the
// caller uses cv2 there). The same float operations in the same order as OpenCV's ResizeArea_Invoker:
//
//   per axis, output index d covers source [d * s, (d + 1) * s), s = 1 / (sw / W) in double; each source pixel
//   it touches gets weight (covered part) / min(s, W - d * s) as float; slivers under 1e-3 are left out
//   per source row, a float row:    h[d] = ((x0 * w0) + x1 * w1) + ...      over that row's pixels, in order
//   per output row, from those:     v = ((h0 * b0) + h1 * b1) + ...         over the source rows, in order
//   out = v rounded to nearest, ties to even, clamped to [0, 255]
//
// Unlike OpenCV, each source row's float row is made once (not once per output row that uses it) and only for
// the window's columns, and only the window's rows are summed. Zero weights pad every output to the same
// number of taps (x + 0 * y == x exactly for the finite, non-negative values here). The interpreter lock is
// released while it runs; a window of more than 256 KiB is computed in bands of rows on up to 4 threads (at
// most the hardware's), which changes no byte: every output row is computed on its own.
//
// Multiply-adds: the last bit depends on whether OpenCV's compiler fused `sum + a * b` into one rounding. On
// x86-64 OpenCV's area code is baseline code without FMA: not fused (checked bit for bit against OpenCV 4.5.4,
// 4.6.0 and 5.0). On aarch64 GCC fuses by default (its -ffp-contract=fast), so a GCC-built OpenCV there most
// likely is. So the caller says which (geometry.py finds out once by comparing with cv2), the kernel does
// exactly that at each multiply-add of OpenCV's code, and setup.py compiles this file with -ffp-contract=off so
// that the compiler fuses nothing of its own accord.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

// ICM_IMAGE_LOOP: the row loops also for AVX2 (x86-64-v3, which has FMA: -ffp-contract=off keeps it out).
#include "../instances/image_loop.h"

namespace {

// Four floats: one pixel of 3 or 4 channels (the 4th lane of a 3-channel pixel is ignored).
typedef float Lanes __attribute__((vector_size(16)));

inline Lanes load_lanes(const float* from) {
  Lanes lanes;
  std::memcpy(&lanes, from, sizeof lanes);
  return lanes;
}

// sum + a * b as OpenCV's build computes its `sum + a * b`: rounded twice (the product, then the sum) or, Fused,
// once (a fused multiply-add; see the top of the file).
template <bool Fused>
inline float add_product(float sum, float a, float b) {
  if constexpr (Fused) {
    return std::fma(a, b, sum);
  } else {
    const float product = a * b;
    return sum + product;
  }
}

template <bool Fused>
inline Lanes add_product(Lanes sum, Lanes a, float b) {
  if constexpr (Fused) {
    for (int c = 0; c < 4; ++c) sum[c] = std::fma(a[c], b, sum[c]);
    return sum;
  } else {
    const Lanes product = a * b;
    return sum + product;
  }
}

// Round to nearest, ties to even (cvRound), for 0 <= value < 2^23: adding 2^23 leaves no fraction bits, so the
// addition itself rounds in the default rounding mode. Then clamped like saturate_cast<uchar>.
inline uint8_t round_to_byte(float value) {
  const float rounded = (value + 8388608.0f) - 8388608.0f;
  return static_cast<uint8_t>(static_cast<int32_t>(std::min(rounded, 255.0f)));
}

// One axis of the area filter, for the outputs [begin, end): output d reads sources first[d - begin] + k
// with weight weight[(d - begin) * taps + k], k < taps (trailing weights 0 where it reads fewer).
struct AxisTaps {
  int64_t taps = 0;
  int64_t common = 0;  // the most frequent number of sources an output reads
  std::vector<int64_t> first, count;
  std::vector<float> weight;
};

// OpenCV's area table (computeResizeAreaTab) for source size `source` shrunk to `scaled`, outputs [begin, end).
AxisTaps area_taps(int64_t source, int64_t scaled, int64_t begin, int64_t end) {
  const double scale = 1.0 / (static_cast<double>(scaled) / static_cast<double>(source));  // as cv::resize
  std::vector<std::vector<std::pair<int64_t, float>>> lists;
  for (int64_t d = begin; d < end; ++d) {
    const double start = static_cast<double>(d) * scale, stop = start + scale;
    const double cell = std::min(scale, static_cast<double>(source) - start);  // the last cell may be cut short
    const int64_t last = std::min(static_cast<int64_t>(std::floor(stop)), source - 1);
    const int64_t first_whole = std::min(static_cast<int64_t>(std::ceil(start)), last);
    std::vector<std::pair<int64_t, float>> list;
    if (static_cast<double>(first_whole) - start > 1e-3) {
      list.emplace_back(first_whole - 1, static_cast<float>((static_cast<double>(first_whole) - start) / cell));
    }
    for (int64_t s = first_whole; s < last; ++s) list.emplace_back(s, static_cast<float>(1.0 / cell));
    const double after = stop - static_cast<double>(last);  // the part of source `last` inside the cell
    if (after > 1e-3) list.emplace_back(last, static_cast<float>(std::min(std::min(after, 1.0), cell) / cell));
    lists.push_back(std::move(list));
  }
  AxisTaps axis;
  for (const auto& list : lists) axis.taps = std::max<int64_t>(axis.taps, static_cast<int64_t>(list.size()));
  axis.taps = std::max<int64_t>(axis.taps, 1);
  axis.weight.assign(lists.size() * static_cast<size_t>(axis.taps), 0.0f);
  for (size_t d = 0; d < lists.size(); ++d) {
    // The sources of one output are consecutive (the partial one before, the whole ones, the partial one after).
    // One that reads none (its weights all 0) points where the one before it does.
    axis.first.push_back(!lists[d].empty() ? lists[d].front().first : axis.first.empty() ? 0 : axis.first.back());
    axis.count.push_back(static_cast<int64_t>(lists[d].size()));
    float* weights = axis.weight.data() + d * static_cast<size_t>(axis.taps);
    for (size_t k = 0; k < lists[d].size(); ++k) weights[k] = lists[d][k].second;
  }
  std::vector<int64_t> frequency(static_cast<size_t>(axis.taps) + 1, 0);
  for (const int64_t count : axis.count) ++frequency[static_cast<size_t>(count)];
  axis.common = std::max_element(frequency.begin() + 1, frequency.end()) - frequency.begin();
  return axis;
}

// Not inlined: inside its caller GCC no longer sees that the two do not overlap, and does not vectorize it.
__attribute__((noinline)) ICM_IMAGE_LOOP void to_floats(const uint8_t* __restrict__ bytes, int64_t count,
                                                         float* __restrict__ floats) {
  for (int64_t i = 0; i < count; ++i) floats[i] = static_cast<float>(bytes[i]);
}

// One source row, as floats from the window's first source column on -> its float row over the window's
// columns. Every output reads Common sources (zero weights past its own), more only where it has more; 0:
// Common is columns.common, read at run time.
template <bool Fused, int Channels, int Common>
ICM_IMAGE_LOOP void filter_row(const float* __restrict__ source, const AxisTaps& columns, int64_t column_from,
                               float* __restrict__ row) {
  const int64_t common = Common > 0 ? Common : columns.common, taps = columns.taps;
  const int64_t outputs = static_cast<int64_t>(columns.first.size());
  const int64_t *first = columns.first.data(), *count = columns.count.data();
  const float* weight = columns.weight.data();
  for (int64_t d = 0; d < outputs; ++d) {
    const float* x = source + (first[d] - column_from) * Channels;
    const float* w = weight + d * taps;
    const int64_t reads = std::max(common, count[d]);
    if constexpr (Channels == 1) {
      float sum = x[0] * w[0];
      for (int64_t k = 1; k < common; ++k) sum = add_product<Fused>(sum, x[k], w[k]);
      for (int64_t k = common; k < reads; ++k) sum = add_product<Fused>(sum, x[k], w[k]);
      row[d] = sum;
    } else {  // a whole pixel at once; a 3-channel one writes a 4th float that the next pixel overwrites
      Lanes sum = load_lanes(x) * w[0];
      for (int64_t k = 1; k < common; ++k) sum = add_product<Fused>(sum, load_lanes(x + k * Channels), w[k]);
      for (int64_t k = common; k < reads; ++k) sum = add_product<Fused>(sum, load_lanes(x + k * Channels), w[k]);
      std::memcpy(row + d * Channels, &sum, sizeof sum);
    }
  }
}

// One output row from its source rows' float rows: sum over t of rows[t] * weight[t], in order, rounded.
// scratch: `length` floats.
template <bool Fused>
ICM_IMAGE_LOOP void sum_rows(const float* const* rows, const float* weight, int64_t count, int64_t length,
                             float* __restrict__ scratch, uint8_t* __restrict__ out) {
  if (count == 0) {  // no source row reaches it: OpenCV's sum stays 0
    std::memset(out, 0, static_cast<size_t>(length));
  } else if (count == 2) {  // the common case of a ratio under 2, as one loop
    const float* __restrict__ row0 = rows[0];
    const float* __restrict__ row1 = rows[1];
    const float weight0 = weight[0], weight1 = weight[1];
    for (int64_t i = 0; i < length; ++i) out[i] = round_to_byte(add_product<Fused>(row0[i] * weight0, row1[i], weight1));
  } else {
    const float* __restrict__ row0 = rows[0];
    const float weight0 = weight[0];
    for (int64_t i = 0; i < length; ++i) scratch[i] = row0[i] * weight0;
    for (int64_t t = 1; t < count; ++t) {
      const float* __restrict__ row_t = rows[t];
      const float weight_t = weight[t];
      for (int64_t i = 0; i < length; ++i) scratch[i] = add_product<Fused>(scratch[i], row_t[i], weight_t);
    }
    for (int64_t i = 0; i < length; ++i) out[i] = round_to_byte(scratch[i]);
  }
}

struct Image {
  const uint8_t* data;
  Py_ssize_t row_stride;
};

// The window of the shrunk image, `Channels` channels per pixel. columns/rows: the axes' taps for the window.
// reverse: the image's 3 channels in the opposite order (a BGR image read as RGB): swapped as the row becomes floats,
// so every channel's arithmetic is the same as for the reordered image.
template <bool Fused, int Channels>
void shrink_window(Image image, int64_t width, const AxisTaps& columns, const AxisTaps& rows, uint8_t* out,
                   Py_ssize_t out_row_stride, bool reverse) {
  const int64_t out_height = static_cast<int64_t>(rows.first.size());
  const int64_t row_length = static_cast<int64_t>(columns.first.size()) * Channels;
  const int64_t slot_length = row_length + 4;  // room for the last pixel's 4th float
  auto filter = columns.common == 1   ? filter_row<Fused, Channels, 1>
                : columns.common == 2 ? filter_row<Fused, Channels, 2>
                : columns.common == 3 ? filter_row<Fused, Channels, 3>
                                      : filter_row<Fused, Channels, 0>;
  // The source columns the window reads, as floats; zeros past the image for the padded taps and the 4th lane.
  const int64_t column_from = columns.first.front();
  const int64_t column_to = std::min(width, columns.first.back() + columns.taps);
  std::vector<float> source(static_cast<size_t>((columns.first.back() + columns.taps - column_from) * Channels + 1), 0.0f);
  // The float rows of the last rows.taps source rows, source row y in slot y % rows.taps.
  std::vector<float> filtered(static_cast<size_t>(rows.taps * slot_length));
  std::vector<int64_t> slot_row(static_cast<size_t>(rows.taps), -1);
  std::vector<const float*> summed(static_cast<size_t>(rows.taps));
  std::vector<float> scratch(static_cast<size_t>(row_length));
  for (int64_t r = 0; r < out_height; ++r) {
    for (int64_t t = 0; t < rows.count[r]; ++t) {
      const int64_t y = rows.first[r] + t, slot = y % rows.taps;
      float* row = filtered.data() + slot * slot_length;
      summed[t] = row;
      if (slot_row[slot] == y) continue;  // filtered for the output row before
      slot_row[slot] = y;
      to_floats(image.data + y * image.row_stride + column_from * Channels, (column_to - column_from) * Channels,
                source.data());
      if (Channels == 3 && reverse) {
        for (int64_t i = 0; i < (column_to - column_from) * 3; i += 3) std::swap(source[i], source[i + 2]);
      }
      filter(source.data(), columns, column_from, row);
    }
    sum_rows<Fused>(summed.data(), rows.weight.data() + r * rows.taps, rows.count[r], row_length, scratch.data(),
             out + r * out_row_stride);
  }
}

// How many bands of output rows to compute at once: one per 256 KiB of output bytes, at most 4 and at most
// the hardware threads; 1 for small windows (a thread's start costs about as much as 50 KiB of output).
int64_t band_count(int64_t out_height, int64_t row_bytes) {
  const int64_t hardware = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  const int64_t by_size = out_height * row_bytes / (256 * 1024);
  return std::max<int64_t>(1, std::min({by_size, hardware, int64_t{4}, out_height}));
}

bool is_uint8(const Py_buffer& view) {
  return view.itemsize == 1 && view.format != nullptr && (std::strcmp(view.format, "B") == 0 ||
                                                         std::strcmp(view.format, "<B") == 0 ||
                                                         std::strcmp(view.format, "=B") == 0);
}

// Whether `view` holds uint8 pixels of `channels` channels packed within each row (rows may be padded).
// Strides of axes of length 1 are not looked at (NumPy leaves them arbitrary).
bool packed_rows(const Py_buffer& view, Py_ssize_t channels) {
  const Py_ssize_t* shape = view.shape;
  const Py_ssize_t* strides = view.strides;
  if (view.ndim == 3 && shape[2] > 1 && strides[2] != 1) return false;
  if (shape[1] > 1 && strides[1] != channels) return false;
  return shape[0] <= 1 || strides[0] >= shape[1] * channels;
}

PyObject* shrink(PyObject*, PyObject* args) {
  PyObject *image_object = nullptr, *out_object = nullptr;
  Py_ssize_t scaled_height = 0, scaled_width = 0, row_begin = 0, row_end = 0, column_begin = 0, column_end = 0;
  int fused = 0, reverse = 0;
  if (!PyArg_ParseTuple(args, "OnnnnnnOp|p", &image_object, &scaled_height, &scaled_width, &row_begin, &row_end,
                        &column_begin, &column_end, &out_object, &fused, &reverse)) {
    return nullptr;
  }
  Py_buffer image{}, out{};
  PyObject* result = nullptr;
  do {
    if (PyObject_GetBuffer(image_object, &image, PyBUF_STRIDES | PyBUF_FORMAT) != 0) break;
    if (PyObject_GetBuffer(out_object, &out, PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) break;
    if (!is_uint8(image) || !is_uint8(out)) {
      PyErr_Format(PyExc_ValueError, "image and out must be uint8, got struct formats '%s' and '%s'",
                   image.format ? image.format : "B", out.format ? out.format : "B");
      break;
    }
    if (image.ndim != 2 && image.ndim != 3) {
      PyErr_Format(PyExc_ValueError, "image must be [H, W] or [H, W, C], got %d dimensions", image.ndim);
      break;
    }
    const Py_ssize_t height = image.shape[0], width = image.shape[1], channels = image.ndim == 3 ? image.shape[2] : 1;
    if (channels != 1 && channels != 3 && channels != 4) {
      PyErr_Format(PyExc_ValueError, "image has %zd channels; the kernel takes 1, 3 or 4", channels);
      break;
    }
    if (scaled_height < 1 || scaled_height > height || scaled_width < 1 || scaled_width > width) {
      PyErr_Format(PyExc_ValueError, "scaled size (%zd, %zd) must shrink the image of size (%zd, %zd): "
                   "1 <= scaled_height <= H and 1 <= scaled_width <= W", scaled_height, scaled_width, height, width);
      break;
    }
    if (row_begin < 0 || row_begin > row_end || row_end > scaled_height || column_begin < 0 ||
        column_begin > column_end || column_end > scaled_width) {
      PyErr_Format(PyExc_ValueError, "window rows [%zd, %zd) and columns [%zd, %zd) must lie inside the scaled "
                   "image of size (%zd, %zd)", row_begin, row_end, column_begin, column_end, scaled_height,
                   scaled_width);
      break;
    }
    const Py_ssize_t out_height = row_end - row_begin, out_width = column_end - column_begin;
    if (out.ndim != image.ndim || out.shape[0] != out_height || out.shape[1] != out_width ||
        (out.ndim == 3 && out.shape[2] != channels)) {
      PyErr_Format(PyExc_ValueError, "out must have the window's shape (%zd, %zd%s) like the image's %d dimensions, "
                   "got %d dimensions of shape (%zd, %zd, ...)", out_height, out_width,
                   image.ndim == 3 ? ", C" : "", image.ndim, out.ndim, out.ndim > 0 ? out.shape[0] : 0,
                   out.ndim > 1 ? out.shape[1] : 0);
      break;
    }
    if (!packed_rows(image, channels) || !packed_rows(out, channels)) {
      PyErr_SetString(PyExc_ValueError, "image and out must hold their pixels packed within each row "
                                        "(C-contiguous, or rows padded): pixel stride C bytes, channel stride 1");
      break;
    }
    if (reverse && channels != 3) {
      PyErr_Format(PyExc_ValueError, "reverse_channels needs a 3-channel image, got %zd channels", channels);
      break;
    }
    if (out_height == 0 || out_width == 0) {
      Py_INCREF(Py_None);
      result = Py_None;
      break;
    }
    bool out_of_memory = false;
    Py_BEGIN_ALLOW_THREADS
    try {
      const AxisTaps columns = area_taps(width, scaled_width, column_begin, column_end);
      const Image source{static_cast<const uint8_t*>(image.buf), image.strides[0]};
      uint8_t* target = static_cast<uint8_t*>(out.buf);
      const auto window = fused ? (channels == 1 ? shrink_window<true, 1> : channels == 3 ? shrink_window<true, 3>
                                                                                        : shrink_window<true, 4>)
                                : (channels == 1 ? shrink_window<false, 1> : channels == 3 ? shrink_window<false, 3>
                                                                                         : shrink_window<false, 4>);
      // Bands of output rows on threads of their own (each output row is computed alone, so the bytes are the
      // same however the rows are split): a camera frame is worth it, a small window is not.
      const int64_t parts = band_count(out_height, out_width * channels);
      std::unique_ptr<bool[]> failed(new bool[static_cast<size_t>(parts)]());
      auto band = [&](int64_t part) {
        const int64_t begin = row_begin + out_height * part / parts, end = row_begin + out_height * (part + 1) / parts;
        try {
          const AxisTaps rows = area_taps(height, scaled_height, begin, end);
          window(source, width, columns, rows, target + (begin - row_begin) * out.strides[0], out.strides[0],
                 reverse != 0);
        } catch (const std::bad_alloc&) {
          failed[static_cast<size_t>(part)] = true;
        }
      };
      std::vector<std::thread> helpers;
      helpers.reserve(static_cast<size_t>(parts));  // emplace_back below can then only fail to start a thread
      int64_t part = 1;
      try {
        for (; part < parts; ++part) helpers.emplace_back(band, part);
      } catch (const std::system_error&) {  // no more threads: the remaining bands run here
      }
      for (int64_t inline_part = part; inline_part < parts; ++inline_part) band(inline_part);
      band(0);
      for (std::thread& helper : helpers) helper.join();
      for (int64_t k = 0; k < parts; ++k) out_of_memory = out_of_memory || failed[static_cast<size_t>(k)];
    } catch (const std::bad_alloc&) {
      out_of_memory = true;
    }
    Py_END_ALLOW_THREADS
    if (out_of_memory) {
      PyErr_NoMemory();
      break;
    }
    Py_INCREF(Py_None);
    result = Py_None;
  } while (false);
  for (Py_buffer* view : {&image, &out}) {
    if (view->obj != nullptr) PyBuffer_Release(view);
  }
  return result;
}

PyMethodDef methods[] = {
    {"shrink", shrink, METH_VARARGS,
     "shrink(image, scaled_height, scaled_width, row_begin, row_end, column_begin, column_end, out, fused, "
     "reverse_channels=False) -> None: "
     "out = cv2.resize(image, (scaled_width, scaled_height), interpolation=cv2.INTER_AREA)[row_begin:row_end, "
     "column_begin:column_end] for uint8 images where OpenCV takes its generic area path; fused: whether that "
     "OpenCV build fuses its multiply-adds; reverse_channels: the 3 channels in the opposite order (BGR -> RGB)"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_resize_kernel", "Area shrink of a window of a uint8 image (compiled).",
                      -1, methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__resize_kernel() { return PyModule_Create(&module); }
