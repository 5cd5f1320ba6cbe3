// Serves what the build wrote (build/out.txt) and whether the devDependency
// (kleur) is still installed (it must not be: dev dependencies are pruned).
const fs = require("fs");
const http = require("http");
const ms = require("ms");
let dev = "absent";
try {
  require.resolve("kleur");
  dev = "present";
} catch (_) {}
http.createServer((req, res) => {
  const built = fs.readFileSync("build/out.txt", "utf8").trim();
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(`${built}; dev dependency ${dev}; NODE_ENV=${process.env.NODE_ENV}; ${ms(60000)}\n`);
}).listen(Number(process.env.PORT));
