// Reports the Node it runs on (.nvmrc asks for 24).
const http = require("http");
const ms = require("ms");
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(`nvmrc app on node ${process.version}; ${ms(180000)}\n`);
}).listen(Number(process.env.PORT));
