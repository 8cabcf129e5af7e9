// PS Plan's own page behaviour: small, no build step, no inline script (the CSP forbids it).
"use strict";

(function () {
  // --- Navigation collapses behind a Menu button on narrow screens --------------------------
  function setUpNavigation() {
    const toggle = document.querySelector(".nav-toggle");
    if (!toggle) return;
    toggle.addEventListener("click", function () {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      document.getElementById(toggle.getAttribute("aria-controls")).classList.toggle("open", open);
    });
  }

  // --- Filter URLs carry only the filters in use --------------------------------------------
  function dropEmptyParameters(event) {
    if (event.detail.verb !== "get") return;
    const parameters = event.detail.parameters;
    const names = parameters instanceof FormData ? Array.from(parameters.keys()) : Object.keys(parameters);
    for (const name of names) {
      const value = parameters instanceof FormData ? parameters.get(name) : parameters[name];
      if (value === "" || value === null) {
        if (parameters instanceof FormData) parameters.delete(name);
        else delete parameters[name];
      }
    }
  }

  function dropEmptyFieldsOnSubmit(event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "get") return;
    for (const field of form.elements) {
      if (field.name && field.value === "" && !field.disabled) {
        field.disabled = true;
        setTimeout(function () { field.disabled = false; }, 0);
      }
    }
  }

  // --- Focus returns to the element that was changed ----------------------------------------
  let focusKey = null;

  function rememberFocus(event) {
    // A live refresh keeps focus where the user is; an action keeps it on what it changed.
    const from = isLiveRefresh(event) ? document.activeElement : event.detail.elt;
    const keyed = from && from.closest && from.closest("[data-focus-key]");
    if (keyed) focusKey = keyed.dataset.focusKey;
  }

  function isLiveRefresh(event) {
    const trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    return Boolean(trigger && trigger.type === "psplan-changed");
  }

  // A live refresh never pulls the content from under an open menu, a ticked row or a field being edited.
  function holdRefreshWhileEditing(event) {
    if (!isLiveRefresh(event)) return;
    const target = event.detail.target;
    const busy = target.querySelector("#move-menu:not([hidden]), input[type=checkbox]:checked") ||
      (target.contains(document.activeElement) && document.activeElement.matches("input, select, textarea"));
    if (busy) event.preventDefault();
  }

  function restoreFocus() {
    if (!focusKey) return;
    const target = document.querySelector('[data-focus-key="' + CSS.escape(focusKey) + '"]');
    focusKey = null;
    if (!target || target.contains(document.activeElement)) return;
    const control = target.querySelector("[data-focus-target]") || target;
    if (!control.hasAttribute("tabindex") && control === target) control.setAttribute("tabindex", "-1");
    control.focus();
  }

  // --- Confirmations disappear by themselves after a few seconds -----------------------------
  function scheduleDismissals(root) {
    const found = Array.from(root.querySelectorAll("[data-dismiss-after]"));
    if (root.matches && root.matches("[data-dismiss-after]")) found.push(root);
    for (const element of found) {
      if (element.dataset.dismissScheduled) continue;
      element.dataset.dismissScheduled = "1";
      setTimeout(function () { element.remove(); }, Number(element.dataset.dismissAfter));
    }
  }

  // --- Board: "Move" opens the one stage list inside the card; nothing moves until it is confirmed ---
  function moveMenu() {
    return document.getElementById("move-menu");
  }

  function closeMoveMenu(returnFocus) {
    const menu = moveMenu();
    if (!menu || menu.hidden) return;
    const card = menu.closest("[data-move-url]");
    menu.hidden = true;
    if (card) {
      const button = card.querySelector("[data-move-toggle]");
      button.setAttribute("aria-expanded", "false");
      if (returnFocus) button.focus();
    }
  }

  function openMoveMenu(button) {
    const menu = moveMenu();
    const card = button.closest("[data-move-url]");
    closeMoveMenu(false);
    card.appendChild(menu);
    menu.querySelector("select").value = card.dataset.stage;
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    menu.querySelector("select").focus();
  }

  function onClick(event) {
    const button = event.target.closest("[data-move-toggle]");
    if (button) {
      if (button.getAttribute("aria-expanded") === "true") closeMoveMenu(true);
      else openMoveMenu(button);
      return;
    }
    if (event.target.closest("[data-move-cancel]")) closeMoveMenu(true);
  }

  function onKeydown(event) {
    if (event.key === "Escape" && event.target.closest("#move-menu")) closeMoveMenu(true);
  }

  function onMoveSubmit(event) {
    const menu = event.target;
    if (menu.id !== "move-menu") return;
    event.preventDefault();
    const card = menu.closest("[data-move-url]");
    moveCard(card, menu.querySelector("select").value);
  }

  function moveCard(card, stage) {
    if (stage === card.dataset.stage) return;
    focusKey = card.dataset.focusKey;
    htmx.ajax("POST", card.dataset.moveUrl, { source: card, target: "#board", swap: "innerHTML", values: { stage: stage } });
  }

  // --- Board: drag a card onto another column ------------------------------------------------
  let dragged = null;

  function onDragStart(event) {
    const card = event.target.closest && event.target.closest("[data-move-url]");
    if (!card) return;
    dragged = card;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.dataset.iid);
    card.classList.add("dragging");
  }

  function dropColumn(event) {
    return dragged && event.target.closest && event.target.closest("[data-drop-stage]");
  }

  function onDragOver(event) {
    const column = dropColumn(event);
    if (!column) return;
    event.preventDefault();
    column.classList.add("drag-over");
  }

  function onDragLeave(event) {
    const column = dropColumn(event);
    if (column && !column.contains(event.relatedTarget)) column.classList.remove("drag-over");
  }

  function onDrop(event) {
    const column = dropColumn(event);
    if (!column) return;
    event.preventDefault();
    column.classList.remove("drag-over");
    const card = dragged;
    dragged = null;
    card.classList.remove("dragging");
    moveCard(card, column.dataset.dropStage);
  }

  function onDragEnd() {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpNavigation();
    scheduleDismissals(document);
  });
  document.addEventListener("submit", dropEmptyFieldsOnSubmit);
  document.addEventListener("submit", onMoveSubmit);
  document.addEventListener("click", onClick);
  document.addEventListener("keydown", onKeydown);
  document.addEventListener("dragstart", onDragStart);
  document.addEventListener("dragover", onDragOver);
  document.addEventListener("dragleave", onDragLeave);
  document.addEventListener("drop", onDrop);
  document.addEventListener("dragend", onDragEnd);
  document.addEventListener("htmx:configRequest", dropEmptyParameters);
  document.addEventListener("htmx:beforeRequest", rememberFocus);
  document.addEventListener("htmx:beforeRequest", holdRefreshWhileEditing);
  document.addEventListener("htmx:afterSettle", restoreFocus);
  document.addEventListener("htmx:load", function (event) { scheduleDismissals(event.detail.elt); });
})();
