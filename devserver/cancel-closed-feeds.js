// Preloaded into pouchdb-server by enqueue.devserver (NODE_OPTIONS=--require).
//
// express-pouchdb never cancels a continuous _changes feed whose client went
// away (it cancels only long-polls): every closed feed stays a live listener
// for the rest of the server's life, and each one is run again at every
// write. CouchDB ends such a feed. This wraps express-pouchdb's changes route
// so that a continuous feed is cancelled when its response closes.
"use strict";

var Module = require("module");
var path = require("path");

var ROUTES_INDEX = path.join("express-pouchdb", "lib", "index.js");
var originalRequire = Module.prototype.require;

function cancellingOnClose(handler) {
  return function (req, res, next) {
    if (req.query && req.query.feed === "continuous" && req.db) {
      var db = req.db;
      var feedDb = Object.create(db);
      feedDb.changes = function (opts) {
        var feed = db.changes(opts);
        res.on("close", function () {
          feed.cancel();
          console.log("enqueue: cancelled the continuous changes feed of a closed connection");
        });
        return feed;
      };
      req.db = feedDb;
    }
    return handler.apply(this, arguments);
  };
}

function wrapChangesRoute(route) {
  return function (app) {
    var routes = Object.create(app);
    ["get", "post"].forEach(function (method) {
      routes[method] = function () {
        var args = Array.prototype.slice.call(arguments);
        if (args[0] === "/:db/_changes") {
          args[args.length - 1] = cancellingOnClose(args[args.length - 1]);
        }
        return app[method].apply(app, args);
      };
    });
    return route(routes);
  };
}

Module.prototype.require = function (id) {
  var loaded = originalRequire.apply(this, arguments);
  if (id === "./routes/changes" && this.filename && this.filename.endsWith(ROUTES_INDEX)) {
    return wrapChangesRoute(loaded);
  }
  return loaded;
};
