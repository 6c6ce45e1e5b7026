// GpioLineAdapter on the libgpiod 1.6 C++ bindings. The only file that
// includes gpiod.hpp: a libgpiod 2 build replaces this file.
#include <fmt/format.h>

#include <gpiod.hpp>
#include <system_error>

#include "otarig/drivers/bench/gpio.hpp"

namespace otarig::drivers::bench {
namespace {

class Libgpiod1Line final : public GpioLineAdapter {
 public:
  explicit Libgpiod1Line(gpiod::line line) : line_(std::move(line)) {}
  ~Libgpiod1Line() override {
    try {
      line_.release();
    } catch (...) {
    }
  }
  Libgpiod1Line(const Libgpiod1Line&) = delete;
  Libgpiod1Line& operator=(const Libgpiod1Line&) = delete;

  void set_active(bool active) override { line_.set_value(active ? 1 : 0); }
  bool active() const override { return line_.get_value() != 0; }

 private:
  gpiod::line line_;  // holds its chip open
};

gpiod::line find(const GpioLineSpec& spec) {
  if (spec.chip.empty()) {
    auto line = gpiod::find_line(spec.name);
    if (!line) throw std::system_error(ENOENT, std::generic_category(), "no chip has a line with this name");
    return line;
  }
  gpiod::chip chip(spec.chip, gpiod::chip::OPEN_LOOKUP);
  if (spec.offset) {
    if (*spec.offset >= chip.num_lines()) {
      throw std::system_error(EINVAL, std::generic_category(),
                              fmt::format("the chip has {} lines", chip.num_lines()));
    }
    return chip.get_line(*spec.offset);
  }
  auto line = chip.find_line(spec.name);
  if (!line) throw std::system_error(ENOENT, std::generic_category(), "the chip has no line with this name");
  return line;
}

}  // namespace

std::unique_ptr<GpioLineAdapter> open_libgpiod_line(const GpioLineSpec& spec, bool initial_active,
                                                    const std::string& consumer) {
  gpiod::line line = find(spec);
  gpiod::line_request request;
  request.consumer = consumer;
  request.request_type = gpiod::line_request::DIRECTION_OUTPUT;
  if (spec.active_low) request.flags = gpiod::line_request::FLAG_ACTIVE_LOW;
  line.request(request, initial_active ? 1 : 0);
  return std::make_unique<Libgpiod1Line>(std::move(line));
}

std::string libgpiod_version() { return ::gpiod_version_string(); }

}  // namespace otarig::drivers::bench
