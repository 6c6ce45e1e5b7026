#include "otarig/reports/attestation.hpp"

#include <fmt/format.h>

#include "detail.hpp"

namespace otarig::reports {

namespace {

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string manifest_text(const std::filesystem::path& out) {
  std::vector<std::string> others;
  auto files = detail::list_files(out, &others);
  if (!others.empty())
    throw std::runtime_error(fmt::format("{}: not a regular file; a bundle holds only files and folders",
                                         (out / others.front()).string()));
  std::string text;
  for (const auto& rel : files) {
    if (detail::outside_manifest(rel)) continue;
    if (rel.find_first_of("\n\r\\") != std::string::npos)
      throw std::runtime_error(
          fmt::format("{}: a file name with a newline or backslash cannot be listed", (out / rel).string()));
    auto digest = detail::sha256_file(out / rel);
    if (!digest) throw std::runtime_error(fmt::format("{}: cannot read", (out / rel).string()));
    text += fmt::format("{}  {}\n", *digest, rel);
  }
  return text;
}

std::string write_manifest(const std::filesystem::path& out) {
  auto text = manifest_text(out);
  detail::write_file(out / kManifestFile, text);
  return detail::sha256_hex(text);
}

std::string dsse_pae(std::string_view payload_type, std::string_view payload) {
  return fmt::format("DSSEv1 {} {} {} {}", payload_type.size(), payload_type, payload.size(), payload);
}

std::string key_id_hex(const crypto::PublicKey& key) { return crypto::hex(crypto::key_id(key)); }

nlohmann::ordered_json attestation_statement(const nlohmann::json& run, const std::string& manifest_sha256,
                                             const std::string& run_sha256, const Signer& signer,
                                             const std::string& url) {
  auto view = RunView::of(run);
  if (!run.is_object()) view.head = run;
  return attestation_statement(view, manifest_sha256, run_sha256, signer, url);
}

nlohmann::ordered_json attestation_statement(const RunView& view, const std::string& manifest_sha256,
                                             const std::string& run_sha256, const Signer& signer,
                                             const std::string& url) {
  using nlohmann::ordered_json;
  const auto& run = view.head;
  ordered_json passed = ordered_json::array(), failed = ordered_json::array();
  view.trials.for_each([&](const nlohmann::json& t, std::size_t) {
    auto name = detail::text(t, "scenario") + "/" + detail::text(t, "id");
    (detail::text(t, "verdict") == "pass" ? passed : failed).push_back(name);
  });
  const auto& board = detail::object_at(run, "board");
  const auto& scenario = detail::object_at(run, "scenario");
  const auto& shard = detail::object_at(run, "shard");

  ordered_json configuration = ordered_json::array();
  ordered_json board_rd = {{"name", detail::text(board, "profile")}};
  if (!detail::text(board, "profile_sha256").empty())
    board_rd["digest"] = {{"sha256", detail::text(board, "profile_sha256")}};
  board_rd["annotations"] = {{"role", "board-profile"},
                             {"board", detail::text(board, "name")},
                             {"device_kind", detail::text(board, "device_kind")},
                             {"identity", detail::text(board, "identity")}};
  configuration.push_back(board_rd);
  configuration.push_back(
      {{"name", "scenario/" + detail::text(scenario, "name")},
       {"annotations",
        {{"role", "scenario"},
         {"title", detail::text(scenario, "title")},
         {"seed", detail::text(run, "seed")},
         {"shard", fmt::format("{}/{}", detail::text(shard, "index"), detail::text(shard, "count"))}}}});
  for (const auto& r : detail::array_at(run, "releases"))
    configuration.push_back({{"name", "release/" + detail::text(r, "name")},
                             {"digest", {{"sha256", detail::text(r, "sha256")}}},
                             {"annotations",
                              {{"role", "release-image"},
                               {"version", detail::text(r, "version")},
                               {"security_counter", detail::text(r, "security_counter")}}}});

  bool ok = failed.empty() && !(run.is_object() && run.contains("aborted"));
  ordered_json predicate = {{"result", ok ? "PASSED" : "FAILED"}, {"configuration", configuration}};
  if (!url.empty()) predicate["url"] = url;
  predicate["passedTests"] = passed;
  predicate["warnedTests"] = ordered_json::array();
  predicate["failedTests"] = failed;
  predicate["test_key"] = signer.test_key;
  predicate["signer"] = {{"keyid", signer.keyid}, {"test_key", signer.test_key}};
  ordered_json otarig = {{"version", detail::text(detail::object_at(run, "otarig"), "version")},
                         {"git_revision", detail::text(detail::object_at(run, "otarig"), "git_revision")},
                         {"started", detail::text(run, "started")},
                         {"ended", detail::text(run, "ended")},
                         {"summary", detail::object_at(run, "summary")}};
  if (run.is_object() && run.contains("aborted")) otarig["aborted"] = detail::text(run, "aborted");
  if (!detail::array_at(run, "merged_from").empty()) otarig["merged_from"] = run["merged_from"].size();
  predicate["otarig"] = otarig;

  return {{"_type", kStatementType},
          {"subject",
           {{{"name", kManifestFile}, {"digest", {{"sha256", manifest_sha256}}}},
            {{"name", "run.json"}, {"digest", {{"sha256", run_sha256}}}}}},
          {"predicateType", kPredicateType},
          {"predicate", predicate}};
}

std::string dsse_envelope(std::string_view payload, const crypto::Ed25519Key& key) {
  auto pae = dsse_pae(kPayloadType, payload);
  auto sig = key.sign(std::span(reinterpret_cast<const std::uint8_t*>(pae.data()), pae.size()));
  nlohmann::ordered_json env = {
      {"payloadType", kPayloadType},
      {"payload", base64_encode(payload)},
      {"signatures", nlohmann::ordered_json::array(
                         {{{"keyid", key_id_hex(key.public_key())},
                           {"sig", base64_encode(std::string_view(reinterpret_cast<const char*>(sig.data()),
                                                                  sig.size()))}}})}};
  return dump(env) + "\n";
}

void write_attestation(const std::filesystem::path& out, const nlohmann::json& run,
                       const crypto::Ed25519Key& key, bool test_key, const std::string& url) {
  auto view = RunView::of(run);
  if (!run.is_object()) view.head = run;
  write_attestation(out, view, key, test_key, url);
}

void write_attestation(const std::filesystem::path& out, const RunView& run, const crypto::Ed25519Key& key,
                       bool test_key, const std::string& url) {
  auto manifest = detail::sha256_file(out / kManifestFile);
  auto run_json = detail::sha256_file(out / "run.json");
  if (!manifest || !run_json)
    throw std::runtime_error(
        fmt::format("{}: write the manifest and run.json before the attestation", out.string()));
  auto statement =
      attestation_statement(run, *manifest, *run_json, Signer{key_id_hex(key.public_key()), test_key}, url);
  detail::write_file(out / kPublicKeyFile, public_key_pem(key.public_key()));
  detail::write_file(out / kAttestationFile, dsse_envelope(dump(statement), key));
}

}  // namespace otarig::reports
