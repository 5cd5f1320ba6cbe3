// Serves message.txt on $PORT, with one dependency (ms) to show it loads.
const fs = require("fs");
const http = require("http");
const ms = require("ms");
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(`${fs.readFileSync("message.txt", "utf8").trim()} (${ms(60000)})\n`);
}).listen(Number(process.env.PORT));
