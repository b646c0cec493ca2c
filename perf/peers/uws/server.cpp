// uWebSockets publish-to-all peer for fanline-bench.
//
// One uWS event loop thread. WebSocket route /v1/ws speaks the subset of fanline protocol v1
// the benchmark uses: "welcome" on open, subscribe -> ws->subscribe(channel) + "subscribed",
// ping -> pong. A second App on the same loop serves POST /v1/publish on the admin port and
// calls app.publish(channel, event) (uWS topic = channel). JSON is handled by string search:
// the benchmark's frames are small and fixed-shape; this is not a general JSON parser.
//
// Usage: uws-peer [--listen HOST:PORT] [--admin-listen HOST:PORT]
#include "App.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

// Built twice (perf/peers/build.sh): uws-peer without compression, and uws-deflate-peer with
// -DPEER_COMPRESSION=uWS::DEDICATED_COMPRESSOR (permessage-deflate, one zlib stream per socket:
// every publish is compressed again for each subscriber that negotiated it).
#ifndef PEER_COMPRESSION
#define PEER_COMPRESSION uWS::DISABLED
#endif

namespace {

struct PerSocketData {
    uint64_t id;
};

// Host and port out of "HOST:PORT".
void split_addr(const std::string &a, std::string &host, int &port) {
    auto i = a.rfind(':');
    host = a.substr(0, i);
    port = std::stoi(a.substr(i + 1));
}

// The string value of "key":"..." (no escapes in benchmark channel names or ids).
std::string_view string_field(std::string_view s, std::string_view key) {
    std::string pat = "\"" + std::string(key) + "\":";
    auto i = s.find(pat);
    if (i == std::string_view::npos) return {};
    i += pat.size();
    while (i < s.size() && s[i] == ' ') i++;
    if (i >= s.size() || s[i] != '"') return {};
    auto j = s.find('"', i + 1);
    if (j == std::string_view::npos) return {};
    return s.substr(i + 1, j - i - 1);
}

// Every string in the array value of "key":[...].
std::vector<std::string> string_array(std::string_view s, std::string_view key) {
    std::vector<std::string> out;
    std::string pat = "\"" + std::string(key) + "\":";
    auto i = s.find(pat);
    if (i == std::string_view::npos) return out;
    auto open = s.find('[', i), close = s.find(']', i);
    if (open == std::string_view::npos || close == std::string_view::npos) return out;
    auto arr = s.substr(open + 1, close - open - 1);
    size_t p = 0;
    while ((p = arr.find('"', p)) != std::string_view::npos) {
        auto q = arr.find('"', p + 1);
        if (q == std::string_view::npos) break;
        out.emplace_back(arr.substr(p + 1, q - p - 1));
        p = q + 1;
    }
    return out;
}

// The raw JSON object value of "key":{...} (brace matching, strings respected).
std::string_view object_field(std::string_view s, std::string_view key) {
    std::string pat = "\"" + std::string(key) + "\":";
    auto i = s.find(pat);
    if (i == std::string_view::npos) return {};
    i = s.find('{', i + pat.size());
    if (i == std::string_view::npos) return {};
    int depth = 0;
    bool str = false;
    for (size_t j = i; j < s.size(); j++) {
        char c = s[j];
        if (str) {
            if (c == '\\') j++;
            else if (c == '"') str = false;
        } else if (c == '"') str = true;
        else if (c == '{') depth++;
        else if (c == '}' && --depth == 0) return s.substr(i, j - i + 1);
    }
    return {};
}

uint64_t now_ms() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

}  // namespace

int main(int argc, char **argv) {
    std::string listen = "127.0.0.1:8080", admin = "127.0.0.1:9091";
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--listen")) listen = argv[++i];
        else if (!strcmp(argv[i], "--admin-listen")) admin = argv[++i];
    }
    std::string ws_host, admin_host;
    int ws_port, admin_port;
    split_addr(listen, ws_host, ws_port);
    split_addr(admin, admin_host, admin_port);

    uint64_t next_id = 0, offset = 0;
    uWS::App app;
    app.ws<PerSocketData>("/v1/ws", {
        .compression = PEER_COMPRESSION,
        .maxPayloadLength = 64 * 1024,
        .idleTimeout = 120,
        .maxBackpressure = 4 * 1024 * 1024,
        .closeOnBackpressureLimit = false,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = true,
        .upgrade = nullptr,
        .open = [&next_id](auto *ws) {
            ws->getUserData()->id = next_id++;
            std::string w = "{\"type\":\"welcome\",\"connection_id\":\"uws-" +
                std::to_string(ws->getUserData()->id) +
                "\",\"protocol\":1,\"heartbeat_ms\":20000,\"limits\":{}}";
            ws->send(w, uWS::OpCode::TEXT);
        },
        .message = [](auto *ws, std::string_view msg, uWS::OpCode) {
            auto type = string_field(msg, "type");
            if (type == "subscribe") {
                auto chans = string_array(msg, "channels");
                std::string list;
                for (auto &c : chans) {
                    ws->subscribe(c);
                    list += (list.empty() ? "\"" : ",\"") + c + "\"";
                }
                std::string r = "{\"type\":\"subscribed\",\"id\":\"" +
                    std::string(string_field(msg, "id")) + "\",\"channels\":[" + list +
                    "],\"recovered\":true,\"replayed\":0}";
                ws->send(r, uWS::OpCode::TEXT);
            } else if (type == "ping") {
                ws->send("{\"type\":\"pong\"}", uWS::OpCode::TEXT);
            }
        },
    });

    uWS::App pub;
    pub.post("/v1/publish", [&app, &offset](auto *res, auto *) {
        auto body = std::make_shared<std::string>();
        res->onAborted([]() {});
        res->onData([res, body, &app, &offset](std::string_view chunk, bool last) {
            body->append(chunk);
            if (!last) return;
            auto ch = string_field(*body, "channel");
            auto data = object_field(*body, "data");
            if (ch.empty()) {
                res->writeStatus("400 Bad Request")->end("{\"error\":\"bad publish body\"}");
                return;
            }
            uint64_t off = offset++;
            std::string ev = "{\"type\":\"event\",\"channel\":\"" + std::string(ch) +
                "\",\"id\":\"uws/0/" + std::to_string(off) + "\",\"ts\":" +
                std::to_string(now_ms()) + ",\"data\":" +
                (data.empty() ? std::string("null") : std::string(data)) + "}";
            app.publish(ch, ev, uWS::OpCode::TEXT, PEER_COMPRESSION != uWS::DISABLED);
            res->writeStatus("202 Accepted")
                ->writeHeader("Content-Type", "application/json")
                ->end("{\"topic\":\"uws\",\"partition\":0,\"offset\":" + std::to_string(off) + "}");
        });
    });

    app.listen(ws_host, ws_port, [&](auto *s) {
        if (!s) { fprintf(stderr, "uws-peer: cannot listen on %s\n", listen.c_str()); exit(1); }
    });
    pub.listen(admin_host, admin_port, [&](auto *s) {
        if (!s) { fprintf(stderr, "uws-peer: cannot listen on %s\n", admin.c_str()); exit(1); }
    });
    fprintf(stderr, "uws-peer: ws on %s, publish on %s\n", listen.c_str(), admin.c_str());
    app.run();
}
