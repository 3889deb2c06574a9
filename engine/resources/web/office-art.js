/* Pixel art for the office: one palette and pixel grids (one character per pixel, '.' transparent).
   All drawn by our own code so the page needs no third-party art. */
"use strict";
const ART = {
  palette: {k: "#222034", s: "#eec39a", h: "#663931", b: "#5b6ee1", d: "#8f563b", w: "#cbdbfc",
            m: "#9badb7", g: "#6abe30", r: "#ac3232", y: "#fbf236", f: "#595652", c: "#ffffff", o: "#df7126"},
  person: ["..hhhh..", ".hhhhhh.", ".hssssh.", ".skssks.",
           "..ssss..", ".bbbbbb.", "bbbbbbbb", "sbbbbbbs", "sbbbbbbs", ".bbbbbb.", ".bb..bb.", ".kk..kk."],
  desk: ["kkkkkkkkkkkk", "dddddddddddd", "d..........d", "d..........d"],
  screen: ["kkkkk", "kwwwk", "kwwwk", "..k.."],
  coffee: ["kkkk", "kmmk", "krrk", "kmmk", "kkkk"],
  plant: [".g.g.", "ggggg", ".ggg.", ".ddd.", ".ddd."],
  book: ["rrrr", "rccr", "rrrr"],
  cup: ["cc", "cc"],
  smoke: [".ff.f.", "ffffff", ".ffff.", "..ff.."],
  hand: ["ss"],
};
const TILE = 16;
/* Rooms in tiles: x, y, w, h, a floor colour; the overflow area takes agents that have no known room. */
const LAYOUT = {
  cols: 29, rows: 19,
  rooms: {
    meeting: {x: 1, y: 1, w: 13, h: 8, floor: "#45283c", label: "meeting room"},
    monitoring: {x: 15, y: 1, w: 13, h: 8, floor: "#323c39", label: "monitoring room"},
    library: {x: 1, y: 10, w: 13, h: 8, floor: "#3f3f74", label: "library"},
    overflow: {x: 15, y: 10, w: 13, h: 8, floor: "#4b692f", label: "open space"},
  },
  coffee: {x: 14, y: 9},
  window: {x: 6, y: 0},
  plant: {x: 26, y: 2},
};
